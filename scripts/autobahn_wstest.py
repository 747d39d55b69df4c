#!/usr/bin/env python3
"""Run Autobahn|Testsuite's wstest from an unpacked checkout, under Debian's
(older) python3-autobahn / python3-twisted.

Usage: AUTOBAHN_DIR=/opt/autobahn-testsuite python3 scripts/autobahn_wstest.py -m fuzzingclient -s spec.json

What it adds over `python3 -m autobahntestsuite.wstest`:
  * puts $AUTOBAHN_DIR/autobahntestsuite on sys.path (no pip install needed);
  * makes json.dumps accept bytes (Debian's autobahn hands some values, e.g.
    close reasons and payloads, over as bytes, which the report writer would
    otherwise choke on): valid UTF-8 becomes a string, other bytes become
    "0x<hex>";
  * if writing the report still raises, prints the error and lets wstest
    stop its reactor (it would otherwise hang forever), then exits 4;
  * exits 5 at once when no case matches the spec (wstest would hang);
  * avoids runpy's "found in sys.modules" warning.
Nothing in the checkout is modified.
"""
import json
import os
import sys


def _bytes_default(self, o, _orig=json.JSONEncoder.default):
    if isinstance(o, (bytes, bytearray, memoryview)):
        b = bytes(o)
        try:
            return b.decode("utf-8")
        except UnicodeDecodeError:
            return "0x" + b.hex()
    if isinstance(o, (set, frozenset)):
        return sorted(o, key=repr)
    return _orig(self, o)


def main():
    root = os.environ.get("AUTOBAHN_DIR", "/opt/autobahn-testsuite")
    pkg_parent = os.path.join(root, "autobahntestsuite")
    if not os.path.isfile(os.path.join(pkg_parent, "autobahntestsuite", "wstest.py")):
        sys.stderr.write("autobahn_wstest: no Autobahn|Testsuite checkout at %s\n" % root)
        sys.exit(2)
    sys.path.insert(0, pkg_parent)
    json.JSONEncoder.default = _bytes_default

    from autobahntestsuite import wstest  # installs the epoll reactor first
    from autobahntestsuite import fuzzing

    failed = []
    orig_create = fuzzing.FuzzingFactory.createReports

    def create_reports(self, *a, **kw):
        try:
            return orig_create(self, *a, **kw)
        except Exception:
            import traceback
            traceback.print_exc()
            sys.stderr.write("autobahn_wstest: writing the report failed (see above)\n")
            failed.append(True)
            # returning normally lets the caller go on to reactor.stop()

    fuzzing.FuzzingFactory.createReports = create_reports

    # With no case matching the spec, wstest would wait forever.
    def start_client(spec, debug=False):
        factory = fuzzing.FuzzingClientFactory(spec, debug)
        if not factory.specCases:
            sys.stderr.write("autobahn_wstest: no test case matches %r (excluding %r)\n"
                             % (spec.get("cases"), spec.get("exclude-cases")))
            sys.exit(5)
        return True

    fuzzing.startClient = start_client

    sys.argv = ["wstest"] + sys.argv[1:]
    wstest.run()
    if failed:
        sys.exit(4)


if __name__ == "__main__":
    main()
