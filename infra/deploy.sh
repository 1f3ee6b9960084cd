#!/usr/bin/env bash
# `make deploy` / `make destroy`: sam deploy and sam delete for one environment of samconfig.toml.
#
#   infra/deploy.sh deploy ENV    find the secret, build for the stack's architecture, then deploy:
#                                 guided the first time (sam asks for the parameters and saves them
#                                 in samconfig.toml), plain `sam deploy` after
#   infra/deploy.sh destroy ENV   sam delete (the tables are kept: DeletionPolicy Retain)
#
# The secret is found by name, <stack>/line (`oa secrets put --name <stack>/line` creates it), in
# the environment's saved region, and its ARN given to the stack's SecretArn parameter. ARCH
# (arm64 or x86-64) is needed only to choose on the first deploy; later it must match what the
# stack runs. OA (default: cargo run -p oa), SAM (sam), BUILD (tools/local/stack.sh build) and
# SAMCONFIG (this directory's samconfig.toml) can be replaced, e.g. by a test.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
CONFIG="${SAMCONFIG:-$HERE/samconfig.toml}"
say() { printf '[deploy] %s\n' "$*" >&2; }
die() { printf '[deploy] error: %s\n' "$*" >&2; exit 1; }

action="${1:-}"; env="${2:-staging}"
[ "$action" = deploy ] || [ "$action" = destroy ] || die "usage: $0 deploy|destroy ENV"
python3 -c 'import tomllib' 2>/dev/null || die "python3 3.11 or later is needed to read $CONFIG"

# The environment's settings, as shell assignments: what SAM saved under [ENV.deploy.parameters]
# (parameter_overrides as a string or a list, as SAM reads it).
settings="$(python3 - "$CONFIG" "$env" <<'PY'
import shlex, sys, tomllib
with open(sys.argv[1], "rb") as f:
    config = tomllib.load(f)
def params(command):
    return config.get(sys.argv[2], {}).get(command, {}).get("parameters", {})
section = {**params("global"), **params("deploy")}
raw = section.get("parameter_overrides", "")
# SAM reads the string a guided deploy writes, a list of "K=V", or a table.
if isinstance(raw, dict):
    overrides = {str(k): str(v) for k, v in raw.items()}
else:
    if isinstance(raw, list):
        raw = " ".join(raw)
    overrides = dict(token.partition("=")[::2] for token in shlex.split(raw))
out = {
    "envs": " ".join(k for k, v in config.items() if isinstance(v, dict) and "deploy" in v),
    "stack": section.get("stack_name", ""),
    "region": section.get("region", ""),
    "saved": "1" if overrides else "",
    "saved_arn": overrides.get("SecretArn", ""),
    "saved_arch": overrides.get("Architecture", ""),
}
for k, v in out.items():
    print(f"{k}={shlex.quote(str(v))}")
PY
)" || die "cannot read $CONFIG"
eval "$settings"

[ -n "$stack" ] || die "no environment '$env' in $CONFIG (there: $envs)"
SAM="${SAM:-sam}"
command -v "$SAM" >/dev/null || die "the SAM CLI is not installed (pip install aws-sam-cli, or AWS's installer); docs/deploy.md"
if [ -n "${OA:-}" ]; then oa=("$OA"); else oa=(cargo run -q --manifest-path "$ROOT/Cargo.toml" -p oa --); fi
# The region SAM saved for the environment is where the stack is: oa looks for the secret there.
region_args=()
if [ -n "$region" ]; then export AWS_REGION="$region"; region_args=(--region "$region"); fi

if [ "$action" = destroy ]; then
  say "deleting stack $stack (environment $env${region:+, $region}); its five tables and the secret $stack/line are kept"
  (cd "$HERE" && "$SAM" delete --config-file "$CONFIG" --config-env "$env" --stack-name "$stack" ${region_args[@]+"${region_args[@]}"})
  say "kept: $stack-events, $stack-users, $stack-tags, $stack-rules, $stack-campaigns (docs/deploy.md, \"Tearing down\", says how to remove them)"
  exit 0
fi

secret="$stack/line"
arn="$("${oa[@]}" secrets arn --name "$secret")" || die "no usable secret $secret${region:+ in $region}: create it first with  oa secrets put --name $secret"
arn_region="$(printf '%s' "$arn" | cut -d: -f4)"
[ -z "$region" ] || [ "$arn_region" = "$region" ] || die "the secret $arn is in $arn_region, the stack in $region"

# The architecture: what the stack runs, once deployed; ARCH (or arm64) the first time.
case "$saved_arch" in
  x86_64) arch=x86-64 ;;
  arm64|'') arch="${saved_arch:-${ARCH:-arm64}}" ;;
  *) die "Architecture=$saved_arch in $CONFIG: arm64 or x86_64" ;;
esac
if [ -n "${ARCH:-}" ] && [ "$ARCH" != "$arch" ]; then
  die "the stack runs $arch functions; ARCH=$ARCH would ship the wrong binaries (change Architecture with a guided deploy first)"
fi
case "$arch" in arm64) sam_arch=arm64 ;; x86-64) sam_arch=x86_64 ;; *) die "ARCH=$arch: arm64 or x86-64" ;; esac
say "stack $stack (environment $env${region:+, $region}), secret $arn, $arch"

if [ -n "${BUILD:-}" ]; then $BUILD "$arch"; else "$ROOT/tools/local/stack.sh" build "$arch"; fi

deploy=("$SAM" deploy --config-file "$CONFIG" --config-env "$env" --template-file template.yaml ${region_args[@]+"${region_args[@]}"})
if [ -z "$saved" ]; then
  say "first deploy of $env: sam asks for each parameter (Enter keeps the default) and saves the answers in $CONFIG"
  say "answer y to \"WebhookFunction Function Url has no authentication. Is this okay?\": every request's signature is checked (docs/deploy.md)"
  say "keep Architecture=$sam_arch: the functions were just built for it"
  (cd "$HERE" && "${deploy[@]}" --guided --parameter-overrides "SecretArn=$arn Architecture=$sam_arch")
elif [ "$saved_arn" != "$arn" ]; then
  # A secret deleted and made again has a new ARN suffix, which IAM matches exactly: the saved
  # answers get the new ARN in place (the rest of the file as it was), then deploy as usual.
  say "the secret's ARN changed (${saved_arn:-none saved} -> $arn): saving the new one in $CONFIG"
  [ -n "$saved_arn" ] || die "no SecretArn in $env's saved parameter_overrides: add SecretArn=\"$arn\" to them"
  python3 - "$CONFIG" "$saved_arn" "$arn" <<'PY' || die "cannot update $CONFIG"
import sys
path, old, new = sys.argv[1:]
text = open(path).read()
if text.count(old) != 1:
    sys.exit(f"{old} is in {path} {text.count(old)} times, not once")
open(path, "w").write(text.replace(old, new))
PY
  (cd "$HERE" && "${deploy[@]}")
else
  (cd "$HERE" && "${deploy[@]}")
fi
say "next: oa --stack $stack doctor (docs/deploy.md, \"After deploy\")"
