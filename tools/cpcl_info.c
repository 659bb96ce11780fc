/* cpcl_info -- what this build of cpcl has and what it sees: version, build options, transports
 * (compiled in / usable here), every CPCL_* parameter with its value and default, topology. */
#include <stdio.h>

#include "cpcl.h"

int main(void) {
  int version = 0;
  cpclGetVersion(&version);
  printf("cpcl %d.%d.%d (code %d)\n", version / 10000, version / 100 % 100, version % 100, version);
  printf("build: %s\n\n", cpclGetBuildConfig());

  printf("%-10s %-12s %-8s\n", "transport", "compiled-in", "usable");
  const char* name;
  int compiled, usable;
  for (int i = 0; cpclGetTransportInfo(i, &name, &compiled, &usable) == cpclSuccess; i++)
    printf("%-10s %-12s %-8s\n", name, compiled ? "yes" : "no", usable ? "yes" : "no");

  printf("\n%-20s %-12s %-12s %s\n", "parameter", "value", "default", "meaning");
  const char *value, *def, *help;
  for (int i = 0; cpclGetParamInfo(i, &name, &value, &def, &help) == cpclSuccess; i++)
    printf("%-20s %-12s %-12s %s\n", name, value[0] ? value : "(unset)", def[0] ? def : "(empty)", help);

  char topo[8192];
  cpclResult_t res = cpclGetTopologySummary(topo, sizeof(topo));
  printf("\ntopology:\n%s", res == cpclSuccess ? topo : cpclGetLastError(NULL));
  if (res != cpclSuccess) printf("\n");
  return 0;
}
