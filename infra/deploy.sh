#!/usr/bin/env bash
# `make deploy` / `make destroy`: sam deploy and sam delete for one environment of samconfig.toml.
#
#   infra/deploy.sh deploy ENV    the first time guided (sam asks for the parameters and saves them
#                                 in samconfig.toml), then plain `sam deploy --config-env ENV`
#   infra/deploy.sh destroy ENV   sam delete (the tables are kept: DeletionPolicy Retain)
#
# The secret is found by name, <stack>/line (`oa secrets put --name <stack>/line` creates it), and
# its ARN given to the stack's SecretArn parameter. OA (default: cargo run -p oa), SAM (sam) and
# SAMCONFIG (this directory's samconfig.toml) can be replaced, e.g. by a test.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CONFIG="${SAMCONFIG:-$HERE/samconfig.toml}"
say() { printf '[deploy] %s\n' "$*" >&2; }
die() { printf '[deploy] error: %s\n' "$*" >&2; exit 1; }

action="${1:-}"; env="${2:-staging}"
[ "$action" = deploy ] || [ "$action" = destroy ] || die "usage: $0 deploy|destroy ENV"

# The [ENV.deploy.parameters] section of samconfig.toml, and one key of it.
section() { sed -n "/^\[$env\.deploy\.parameters\]/,/^\[/p" "$CONFIG"; }
key() { section | sed -n "s/^$1 *= *\"\(.*\)\"$/\1/p" | head -n 1; }

stack="$(key stack_name)"
if [ -z "$stack" ]; then
  envs="$(sed -n 's/^\[\([a-z0-9_-]*\)\.deploy\.parameters\]$/\1/p' "$CONFIG" | xargs)"
  die "no environment '$env' in infra/samconfig.toml (there: $envs)"
fi
SAM="${SAM:-sam}"
command -v "${SAM%% *}" >/dev/null || die "the SAM CLI is not installed (pip install aws-sam-cli, or AWS's installer); docs/deploy.md"
OA="${OA:-cargo run -q --manifest-path $HERE/../Cargo.toml -p oa --}"

if [ "$action" = destroy ]; then
  say "deleting stack $stack (environment $env); its five tables are kept"
  (cd "$HERE" && $SAM delete --config-env "$env")
  say "kept: $stack-events, $stack-users, $stack-tags, $stack-rules, $stack-campaigns (docs/deploy.md, \"Tearing down\", says how to remove them)"
  exit 0
fi

secret="$stack/line"
arn="$($OA secrets arn --name "$secret")" || die "no secret $secret: create it first with  oa secrets put --name $secret"
say "stack $stack (environment $env), secret $arn"

saved="$(key parameter_overrides)"
if [ -z "$saved" ]; then
  say "first deploy of $env: sam asks for each parameter (Enter keeps the default) and saves the answers in infra/samconfig.toml"
  say "answer y to \"WebhookFunction Function Url has no authentication. Is this okay?\": every request's signature is checked (docs/deploy.md)"
  (cd "$HERE" && $SAM deploy --guided --config-env "$env" --parameter-overrides "SecretArn=$arn")
else
  # The answers saved by the guided deploy, with the secret's ARN as it is now (a secret deleted
  # and created again has a new ARN suffix, which IAM matches exactly).
  overrides="$(printf '%s' "$saved" | sed 's/\\"/"/g')"
  current="$(printf '%s' "$overrides" | sed -n 's/.*SecretArn="\([^"]*\)".*/\1/p')"
  if [ "$current" != "$arn" ]; then
    say "the secret's ARN changed (${current:-none saved} -> $arn): deploying with the new one"
    overrides="$(printf '%s' "$overrides" | sed 's/SecretArn="[^"]*" *//') SecretArn=\"$arn\""
    (cd "$HERE" && $SAM deploy --config-env "$env" --parameter-overrides "$overrides")
  else
    (cd "$HERE" && $SAM deploy --config-env "$env")
  fi
fi
say "next: oa --stack $stack doctor (docs/deploy.md, \"After deploy\")"
