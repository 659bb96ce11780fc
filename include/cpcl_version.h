/* cpcl_version.h -- the library version, included by cpcl.h. meson.build's project() holds the
 * same number: configuring refuses a tree where the two differ (include/meson.build), so a
 * release changes both. A plain header, so that cpcl.h compiles on its own. */
#ifndef CPCL_VERSION_H_
#define CPCL_VERSION_H_

#define CPCL_MAJOR 0
#define CPCL_MINOR 2
#define CPCL_PATCH 0
#define CPCL_VERSION_STRING "0.2.0"

#endif /* CPCL_VERSION_H_ */
