#!/usr/bin/env bash
# Autobahn|Testsuite conformance run against the wsgate gateway (or any
# WebSocket echo server), on 127.0.0.1 only.
#
#   scripts/conformance.sh                 # full yardstick: 1-7, 9, 12, 13
#   QUICK=1 scripts/conformance.sh         # no 9.*, only 12.1.* and 13.1.*
#   CASES='1.*,2.*' scripts/conformance.sh # any case list (comma-separated)
#
# Environment (all optional):
#   AUTOBAHN_DIR   checkout of the Python 3 port of Autobahn|Testsuite
#                  (default /opt/autobahn-testsuite; kept outside the repo)
#   PYTHON         interpreter with Debian's python3-twisted/-autobahn/-txaio/
#                  -jinja2 (default /usr/bin/python3)
#   CASES          comma-separated case patterns (overrides QUICK)
#   EXCLUDE_CASES  comma-separated case patterns to leave out. A pattern with
#                  a '*' is a prefix regexp ('.' literal, '*' = anything), so
#                  QUICK=1 EXCLUDE_CASES='12.1.9,12.1.1[0-8]*,13.1.9,13.1.1[0-8]*'
#                  keeps only the fast small-payload 12.1.1-8 / 13.1.1-8 cases;
#                  a pattern without '*' must be an exact case id.
#   QUICK=1        1.*-7.*, 12.1.*, 13.1.*
#   STRICT=1       also fail on NON-STRICT / UNIMPLEMENTED
#   REPORT_DIR     where the report goes (default /tmp/wsgate-autobahn)
#   PORT, ADMIN_PORT  ports on 127.0.0.1 (default: free ones)
#   TARGET_CMD     shell command that starts the server instead of the
#                  gateway; $PORT and $ADMIN_PORT are exported to it, e.g.
#                  TARGET_CMD='/tmp/echo -addr 127.0.0.1:$PORT'
#   TARGET_URL     test an already running server at this ws:// URL (nothing
#                  is started); must point at 127.0.0.1
#   WS_PATH        path of the WebSocket endpoint (default /ws)
#   AGENT          agent name in the report (default wsgate)
#   WAIT_S         seconds to wait for the server port (default 60)
#   TIMEOUT_S      limit for the whole wstest run (default 7200)
#   VERBOSE=1      stream wstest's output
#
# Exit status: 0 ok; 1 some case FAILED (or STRICT and NON-STRICT/
# UNIMPLEMENTED); 2 Autobahn or its Python deps missing; 3 the server or the
# test run broke (no/partial report).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

AUTOBAHN_DIR=${AUTOBAHN_DIR:-/opt/autobahn-testsuite}
PYTHON=${PYTHON:-/usr/bin/python3}
REPORT_DIR=${REPORT_DIR:-/tmp/wsgate-autobahn}
WS_PATH=${WS_PATH:-/ws}
AGENT=${AGENT:-wsgate}
WAIT_S=${WAIT_S:-60}
TIMEOUT_S=${TIMEOUT_S:-7200}

log() { printf 'conformance: %s\n' "$*" >&2; }

# --- Autobahn checkout --------------------------------------------------------
if [[ ! -f "$AUTOBAHN_DIR/autobahntestsuite/autobahntestsuite/wstest.py" ]]; then
	cat >&2 <<EOF
conformance: no Autobahn|Testsuite checkout at AUTOBAHN_DIR=$AUTOBAHN_DIR
  (expected $AUTOBAHN_DIR/autobahntestsuite/autobahntestsuite/wstest.py)

It is the Python 3 port of Autobahn|Testsuite
(github.com/ricardo-valero/autobahn-testsuite), kept OUTSIDE this repository
and never committed. Obtain a checkout of it yourself and set AUTOBAHN_DIR to
it (default /opt/autobahn-testsuite). Its Python dependencies come from
Debian: scripts/install-deps.sh --autobahn installs them.
Or point AUTOBAHN_DIR at an existing checkout.
EOF
	exit 2
fi
if ! "$PYTHON" -c 'import twisted, autobahn, txaio, jinja2' 2>/dev/null; then
	cat >&2 <<EOF
conformance: $PYTHON cannot import twisted/autobahn/txaio/jinja2.
  Install them:  scripts/install-deps.sh --autobahn
  (= apt-get install -y python3-twisted python3-autobahn python3-txaio python3-jinja2)
  or set PYTHON to an interpreter that has them.
EOF
	exit 2
fi

# --- cases --------------------------------------------------------------------
if [[ -n "${CASES:-}" ]]; then
	cases=$CASES
elif [[ "${QUICK:-0}" == 1 ]]; then
	cases='1.*,2.*,3.*,4.*,5.*,6.*,7.*,12.1.*,13.1.*'
else
	cases='1.*,2.*,3.*,4.*,5.*,6.*,7.*,9.*,12.*,13.*'
fi
exclude=${EXCLUDE_CASES:-}

free_port() {
	"$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

work=$(mktemp -d /tmp/wsgate-conformance.XXXXXX)
server_pid=
wstest_pid=
cleanup() {
	if [[ -n "$wstest_pid" ]] && kill -0 "$wstest_pid" 2>/dev/null; then kill "$wstest_pid" 2>/dev/null || true; fi
	if [[ -n "$server_pid" ]]; then
		# the server runs in its own session (setsid): its pid is its
		# process group, so children of TARGET_CMD (go run ...) go too
		kill -- "-$server_pid" 2>/dev/null || kill "$server_pid" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
		kill -9 -- "-$server_pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start=$(date +%s)

# --- server -------------------------------------------------------------------
if [[ -n "${TARGET_URL:-}" ]]; then
	url=$TARGET_URL
	case "$url" in
	ws://127.0.0.1:* | ws://localhost:* | ws://\[::1\]:*) ;;
	*) log "TARGET_URL must be ws:// on loopback, got $url"; exit 3 ;;
	esac
	log "testing running server $url"
else
	PORT=${PORT:-$(free_port)}
	ADMIN_PORT=${ADMIN_PORT:-$(free_port)}
	export PORT ADMIN_PORT
	url="ws://127.0.0.1:$PORT$WS_PATH"
	if [[ -n "${TARGET_CMD:-}" ]]; then
		log "starting TARGET_CMD: $TARGET_CMD (PORT=$PORT)"
		setsid bash -c "exec $TARGET_CMD" >"$work/server.log" 2>&1 </dev/null &
		server_pid=$!
	else
		log "building ./cmd/gateway"
		if ! (cd "$repo" && go build -o "$work/gateway" ./cmd/gateway) >"$work/build.log" 2>&1; then
			cat "$work/build.log" >&2
			log "go build ./cmd/gateway failed (use TARGET_CMD to test another server)"
			exit 3
		fi
		# Section 9 sends messages of up to 16 MiB.
		log "starting gateway -echo -addr 127.0.0.1:$PORT -admin-addr 127.0.0.1:$ADMIN_PORT -compress -max-message-size 16777216 -max-queue-bytes 67108864"
		setsid "$work/gateway" -echo -addr "127.0.0.1:$PORT" -admin-addr "127.0.0.1:$ADMIN_PORT" -compress -max-message-size 16777216 -max-queue-bytes 67108864 \
			>"$work/server.log" 2>&1 </dev/null &
		server_pid=$!
	fi
	# wait for the port
	deadline=$((SECONDS + WAIT_S))
	until (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; do
		if ! kill -0 "$server_pid" 2>/dev/null; then
			cat "$work/server.log" >&2 || true
			log "server exited before listening on 127.0.0.1:$PORT"
			exit 3
		fi
		if ((SECONDS >= deadline)); then
			cat "$work/server.log" >&2 || true
			log "server did not listen on 127.0.0.1:$PORT within ${WAIT_S}s"
			exit 3
		fi
		sleep 0.1
	done
	log "server up on 127.0.0.1:$PORT"
fi

# --- spec ---------------------------------------------------------------------
mkdir -p "$REPORT_DIR"
REPORT_DIR=$(cd "$REPORT_DIR" && pwd)
case "$REPORT_DIR/" in
"$repo"/*) log "warning: REPORT_DIR $REPORT_DIR is inside the repository; do not commit it" ;;
esac
# old results must not be mistaken for this run's
rm -f "$REPORT_DIR/index.json" "$REPORT_DIR/index.html" "$REPORT_DIR"/*_case_*.json "$REPORT_DIR"/*_case_*.html

"$PYTHON" - "$work/spec.json" "$REPORT_DIR" "$AGENT" "$url" "$cases" "$exclude" <<'EOF'
import json, sys
out, outdir, agent, url, cases, exclude = sys.argv[1:]
split = lambda s: [c.strip() for c in s.split(",") if c.strip()]
spec = {
    "options": {"failByDrop": False},
    "outdir": outdir,
    "servers": [{"agent": agent, "url": url}],
    "cases": split(cases),
    "exclude-cases": split(exclude),
    "exclude-agent-cases": {},
}
json.dump(spec, open(out, "w"), indent=2)
EOF
cp "$work/spec.json" "$REPORT_DIR/spec.json"
log "cases: $cases${exclude:+ (excluding $exclude)}"
log "report: $REPORT_DIR"

# --- run ----------------------------------------------------------------------
wlog="$REPORT_DIR/wstest.log"
(cd "$work" && exec env AUTOBAHN_DIR="$AUTOBAHN_DIR" timeout "$TIMEOUT_S" \
	"$PYTHON" "$here/autobahn_wstest.py" -m fuzzingclient -s "$work/spec.json") >"$wlog" 2>&1 &
wstest_pid=$!
if [[ "${VERBOSE:-0}" == 1 ]]; then
	tail -n +1 -f "$wlog" --pid="$wstest_pid" &
fi
last=0
while kill -0 "$wstest_pid" 2>/dev/null; do
	sleep 1
	if ((SECONDS - last >= 20)) && [[ "${VERBOSE:-0}" != 1 ]]; then
		last=$SECONDS
		planned=$(sed -n 's/^Ok, will run \([0-9]*\) test cases.*/\1/p' "$wlog" | head -1)
		done_n=$(grep -c '^Running test case ID' "$wlog" || true)
		log "... $done_n/${planned:-?} cases started ($(($(date +%s) - start))s)"
	fi
	if [[ -n "$server_pid" ]] && ! kill -0 "$server_pid" 2>/dev/null; then
		log "the server died during the run; its log:"
		tail -n 50 "$work/server.log" >&2 || true
		break
	fi
done
wrc=0
wait "$wstest_pid" || wrc=$?
wstest_pid=
if [[ -n "$server_pid" ]]; then cp "$work/server.log" "$REPORT_DIR/server.log" 2>/dev/null || true; fi
planned=$(sed -n 's/^Ok, will run \([0-9]*\) test cases.*/\1/p' "$wlog" | head -1)
if ((wrc != 0)); then
	tail -n 30 "$wlog" >&2
	log "wstest exited with status $wrc (log: $wlog)"
fi
if [[ -z "$planned" || "$planned" == 0 ]]; then
	tail -n 30 "$wlog" >&2
	log "wstest ran no case (bad CASES pattern?); log: $wlog"
	exit 3
fi

elapsed=$(($(date +%s) - start))
log "wstest finished in ${elapsed}s ($planned cases); HTML report: $REPORT_DIR/index.html"
echo
summary_args=(--agent "$AGENT" --expect "$planned")
if [[ "${STRICT:-0}" == 1 ]]; then summary_args+=(--strict); fi
src=0
"$PYTHON" "$here/autobahn_summary.py" "${summary_args[@]}" "$REPORT_DIR" || src=$?
echo "conformance: total time ${elapsed}s"
if ((src == 0 && wrc != 0)); then src=3; fi
exit "$src"
