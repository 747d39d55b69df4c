#!/usr/bin/env bash
# Install the system packages that wsgate's tests use, and only the missing
# ones. Idempotent and quiet; `apt-get update` runs only when something must
# be installed. Called by .ci/run and by `make test` setup.
#
#   scripts/install-deps.sh             # chromium (headless browser tests, internal/browsertest),
#                                       # nodejs and npm (the JavaScript client's tests, make js-test)
#   scripts/install-deps.sh --autobahn  # also Debian's Python runtime of
#                                       # Autobahn|Testsuite (scripts/conformance.sh)
#
# Needs root (or sudo) and apt-get. Exits non-zero when an install fails;
# without Chromium the browser tests skip (they fail only with
# BROWSERTEST_REQUIRE=1); without node and npm, make js-test fails.
set -euo pipefail

want=(chromium nodejs npm)
for arg in "$@"; do
	case "$arg" in
	--autobahn) want+=(python3-twisted python3-autobahn python3-txaio python3-jinja2) ;;
	-h | --help)
		sed -n '2,12p' "$0"
		exit 0
		;;
	*)
		echo "install-deps: unknown argument $arg" >&2
		exit 2
		;;
	esac
done

installed() {
	[[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" == installed ]]
}

missing=()
for p in "${want[@]}"; do
	if [[ "$p" == chromium ]]; then
		# any browser that internal/browsertest.Find accepts will do
		if [[ -n "${CHROMIUM_PATH:-}" && -x "${CHROMIUM_PATH}" ]] || [[ -x /usr/bin/chromium ]] ||
			command -v chromium-browser google-chrome google-chrome-stable >/dev/null 2>&1; then
			continue
		fi
	fi
	# any node (18 or later) and npm on $PATH will do, however installed
	if [[ "$p" == nodejs ]] && command -v node >/dev/null 2>&1; then
		continue
	fi
	if [[ "$p" == npm ]] && command -v npm >/dev/null 2>&1; then
		continue
	fi
	installed "$p" || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
	exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
	echo "install-deps: apt-get not found; install by hand: ${missing[*]}" >&2
	exit 1
fi
sudo=()
if ((EUID != 0)); then
	if command -v sudo >/dev/null 2>&1; then
		sudo=(sudo -n)
	else
		echo "install-deps: not root and no sudo; install by hand: ${missing[*]}" >&2
		exit 1
	fi
fi

echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp /tmp/install-deps.XXXXXX.log)
trap 'rm -f "$log"' EXIT
if ! { "${sudo[@]}" apt-get update -qq &&
	"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
	tail -n 40 "$log" >&2
	echo "install-deps: installing ${missing[*]} failed" >&2
	exit 1
fi
for p in "${missing[@]}"; do
	if ! installed "$p"; then
		echo "install-deps: $p is still not installed" >&2
		exit 1
	fi
done
echo "install-deps: installed ${missing[*]}" >&2
