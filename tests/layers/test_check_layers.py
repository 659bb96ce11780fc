"""Tests of tools/check_layers.py on synthetic trees: a tree that keeps the layers passes, and
each rule fails on one planted include (run: python3 tools/check_layers.py --self-test, or
python3 -m unittest discover -s tests/layers)."""
import contextlib
import io
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
import check_layers  # noqa: E402

# A small tree shaped like cpcl's: the public header, the services layer, the rest of src/,
# a transport, kernels with a params header, tools, tests; include dirs declared as meson does.
CLEAN = {
    "meson.build": "config_inc = include_directories('.')\ninc = include_directories('include')\n",
    "include/lib.h": "#include <stddef.h>\n",
    "src/meson.build": "lib_inc = [inc, include_directories('.'), include_directories('base')]\n",
    "src/base/err.h": '#include "lib.h"\n',
    "src/base/err.c": '#include "err.h"\n#include "config.h"\n',
    "src/comm.h": '#include "err.h"\n#include "transport.h"\n#include "k_params.h"\n',
    "src/comm.c": '#include "comm.h"\n',
    "transport/meson.build": "transport_inc = include_directories('.')\n",
    "transport/transport.h": '#include "err.h"\n',
    "transport/ucx/ucx.c": '#include "transport.h"\n#include "err.h"\n#include <ucp/api/ucp.h>\n',
    "kernels/meson.build": "kernels_inc = include_directories('.')\n",
    "kernels/k_params.h": "#include <stdint.h>\n",
    "kernels/cuda/common.cuh": '#include "k_params.h"\n',
    "kernels/cuda/attn.cu": '#include "common.cuh"\n#include "k_params.h"\n',
    "tools/perf/driver.h": "\n",
    "tools/dcp_perf.c": '#include "lib.h"\n#include "perf/driver.h"\n',
    "tools/kernel_perf.c": '#include "k_params.h"\n#include "perf/driver.h"\n',
    "tests/meson.build": "tests_inc = include_directories('common')\n",
    "tests/common/util.h": '#include "lib.h"\n',
    "tests/unit/test_comm.c": '#include "comm.h"\n#include "util.h"\n#include "common.cuh"\n',
    # a configured build tree inside the checkout is not part of the sources
    "build/build.ninja": "",
    "build/src/bad.c": '#include "comm.h"\n',
}


class CheckLayersTest(unittest.TestCase):
    def tree(self, **changes):
        """The clean tree with files replaced (path with '/' as '__'), or appended to with '+'."""
        d = tempfile.TemporaryDirectory()
        self.addCleanup(d.cleanup)
        files = dict(CLEAN)
        for key, text in changes.items():
            path = key.replace("__", "/").replace("_DOT_", ".")
            files[path] = files.get(path, "") + text[1:] if text.startswith("+") else text
        for path, text in files.items():
            full = os.path.join(d.name, path)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "w") as f:
                f.write(text)
        return d.name

    def rules(self, root):
        return sorted({v[5] for v in check_layers.check(root)})

    def run_main(self, root):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            status = check_layers.main(["check_layers.py", root])
        return status, out.getvalue()

    def test_clean_tree_passes(self):
        root = self.tree()
        self.assertEqual(check_layers.check(root), [])
        status, out = self.run_main(root)
        self.assertEqual(status, 0, out)
        self.assertIn("0 violation(s)", out)

    def test_transport_including_src_fails(self):
        root = self.tree(transport__ucx__ucx_DOT_c='+#include "comm.h"\n')
        status, out = self.run_main(root)
        self.assertEqual(status, 1)
        # the violation names file, line, the included path and the rule
        self.assertIn('transport/ucx/ucx.c:4: includes "comm.h" (-> src/comm.h): below', out)
        # src -> transport and transport -> src: also a cycle
        self.assertEqual(self.rules(root), ["below", "cycle"])

    def test_kernels_reaching_src_through_a_header_fails(self):
        root = self.tree(kernels__helper_DOT_h='#include "comm.h"\n',
                         kernels__cuda__attn_DOT_cu='+#include "helper.h"\n')
        below = [x for x in check_layers.check(root) if x[5] == "below"]
        # reported once, where the include is written; attn.cu reaches src/ only through it
        self.assertEqual([(x[0], x[1], x[3]) for x in below], [("kernels/helper.h", 1, "src/comm.h")])

    def test_transport_reaching_src_through_another_layer_fails(self):
        # the chain leaves transport/ through a kernels header that includes src/ (through
        # another header of src/): both files are reported, the transport one with its chain
        root = self.tree(kernels__helper_DOT_h='#include "../src/comm.h"\n',
                         transport__ucx__ucx_DOT_c='+#include "helper.h"\n')
        below = {x[0]: x for x in check_layers.check(root) if x[5] == "below"}
        self.assertEqual(sorted(below), ["kernels/helper.h", "transport/ucx/ucx.c"])
        self.assertEqual(below["transport/ucx/ucx.c"][1], 4)
        self.assertEqual(below["transport/ucx/ucx.c"][3], "src/comm.h")
        self.assertEqual(below["transport/ucx/ucx.c"][4], ["kernels/helper.h"])

    def test_services_including_src_fails(self):
        root = self.tree(src__base__err_DOT_c='+#include "comm.h"\n')
        self.assertIn("services", self.rules(root))

    def test_public_header_including_internals_fails(self):
        root = self.tree(include__lib_DOT_h='#include "err.h"\n')
        self.assertIn("public", self.rules(root))

    def test_tools_reach_only_the_public_header(self):
        root = self.tree(tools__dcp_perf_DOT_c='+#include "k_params.h"\n')
        self.assertEqual(self.rules(root), ["tools"])
        root = self.tree(tools__kernel_perf_DOT_c='+#include "cuda/common.cuh"\n')
        self.assertEqual(self.rules(root), ["tools"])
        root = self.tree(tools__kernel_perf_DOT_c='+#include "comm.h"\n')
        self.assertIn("tools", self.rules(root))
        # a header of kernels/ that is not a params header, and a params header that reaches one
        root = self.tree(kernels__peer_sync_DOT_h="\n", tools__kernel_perf_DOT_c='+#include "peer_sync.h"\n')
        self.assertEqual(self.rules(root), ["tools"])
        root = self.tree(kernels__peer_sync_DOT_h="\n", kernels__k_params_DOT_h='+#include "peer_sync.h"\n')
        self.assertEqual(self.rules(root), ["tools"])

    def test_cycle_alone_fails(self):
        # kernels -> transport -> kernels breaks no other rule
        root = self.tree(kernels__cuda__common_DOT_cuh='+#include "transport.h"\n',
                         transport__transport_DOT_h='+#include "k_params.h"\n')
        self.assertEqual(self.rules(root), ["cycle"])

    def test_tests_are_unrestricted(self):
        root = self.tree(tests__unit__test_comm_DOT_c='+#include "ucx/ucx.c"\n#include "perf/driver.h"\n')
        self.assertEqual(check_layers.check(root), [])

    def test_the_repository_is_scanned(self):
        # the real tree parses (its verdict depends on the state of the layers work)
        root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
        sources, incdirs = check_layers.scan(root)
        self.assertIn("include/cpcl.h", sources)
        self.assertIn("include", incdirs)


if __name__ == "__main__":
    unittest.main()
