#!/usr/bin/env python3
"""Checks infra/template.yaml the way it will be deployed: after SAM's transform (samtranslator,
offline), so that what SAM adds on its own (roles, managed policies) is seen too.

It fails when:
- a function's role has a managed policy, or allows anything on "*" (beyond the few actions AWS
  grants only on "*"), or an action infra/sdk-calls.yaml does not list for that function and
  resource (with its dynamodb:LeadingKeys condition), or misses one it lists;
- a function's configuration holds a secret (a {{resolve:...}} reference, or a *SECRET* / *TOKEN*
  variable that is not an ARN);
- an SQS event source has no MaximumConcurrency, or a queue consumer has reserved concurrency;
- a function's log group has no retention, an alarm does not notify the AlarmTopicArn
  parameter, or a log metric filter counts something no alarm watches;
- a table would go with the stack (no Retain deletion and replace policies), or a table or queue
  is not in the stack's Outputs.

Usage: check_template.py [TEMPLATE] [SDK_CALLS]   (defaults: infra/template.yaml, infra/sdk-calls.yaml)
"""

import copy
import json
import logging
import os
import sys

import yaml
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

logging.getLogger("samtranslator").setLevel(logging.ERROR)

# Actions AWS only grants on "*" (no resource-level permissions).
ONLY_ON_STAR = {"xray:PutTraceSegments", "xray:PutTelemetryRecords", "cloudwatch:PutMetricData"}

EXAMPLE_PARAMETERS = {
    "SecretArn": "arn:aws:secretsmanager:ap-northeast-1:123456789012:secret:oa/line-AbCdEf",
}


class OfflinePolicies:
    """Managed policy names are never looked up: a template that needs one fails the transform."""

    def load(self):
        return {}


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def transformed(template):
    """The template as CloudFormation gets it from `sam deploy` (code packaged to S3 first)."""
    t = copy.deepcopy(template)
    for logical_id, r in t.get("Resources", {}).items():
        if r.get("Type") == "AWS::Serverless::Function":
            r.setdefault("Properties", {})["CodeUri"] = f"s3://package/{logical_id}.zip"
    os.environ.setdefault("AWS_DEFAULT_REGION", "ap-northeast-1")
    return transform(t, dict(EXAMPLE_PARAMETERS), OfflinePolicies())


def as_list(v):
    return v if isinstance(v, list) else [v]


def resource_name(r):
    """A statement's resource as the table names it: a logical id, a parameter, or "*"."""
    if r == "*":
        return "*"
    if isinstance(r, dict):
        if "Fn::GetAtt" in r:
            target, attr = r["Fn::GetAtt"] if isinstance(r["Fn::GetAtt"], list) else r["Fn::GetAtt"].split(".", 1)
            return target if attr == "Arn" else f"{target}.{attr}"
        if "Ref" in r:
            return r["Ref"]
        if "Fn::Sub" in r and isinstance(r["Fn::Sub"], str):
            return r["Fn::Sub"].replace("${", "").replace(".Arn}", "").replace("}", "")
    return json.dumps(r, sort_keys=True)


def leading_keys(statement):
    """The dynamodb:LeadingKeys condition as ("only"|"never", sorted patterns), or None."""
    condition = statement.get("Condition") or {}
    for op, kind in (("ForAllValues:StringLike", "only"), ("ForAllValues:StringNotLike", "never")):
        keys = (condition.get(op) or {}).get("dynamodb:LeadingKeys")
        if keys is not None:
            return (kind, tuple(sorted(as_list(keys))))
    return None


def expected_grants(table, function):
    grants = set()
    for entry in table.get(function) or []:
        keys = entry.get("keys")
        cond = None
        if keys:
            (kind, patterns), = keys.items()
            cond = (kind, tuple(sorted(patterns)))
        for action in entry["actions"]:
            grants.add((action, entry["resource"], cond))
    return grants


def check(template, table):
    errors = []
    out = transformed(template)
    resources = out["Resources"]
    functions = {k: v for k, v in resources.items() if v["Type"] == "AWS::Lambda::Function"}
    consumers = set()
    for k, v in resources.items():
        if v["Type"] == "AWS::Lambda::EventSourceMapping":
            fn = v["Properties"]["FunctionName"].get("Ref")
            consumers.add(fn)
            if not (v["Properties"].get("ScalingConfig") or {}).get("MaximumConcurrency"):
                errors.append(f"{k}: the SQS event source of {fn} has no ScalingConfig.MaximumConcurrency")
    for name in table:
        if name not in functions:
            errors.append(f"sdk-calls lists {name}, which the template does not have")
    for name, fn in sorted(functions.items()):
        props = fn["Properties"]
        if name in consumers and "ReservedConcurrentExecutions" in props:
            errors.append(f"{name}: a queue consumer with reserved concurrency (bound it with MaximumConcurrency)")
        for var, value in ((props.get("Environment") or {}).get("Variables") or {}).items():
            text = json.dumps(value)
            if "{{resolve:" in text:
                errors.append(f"{name}: {var} resolves a secret into the configuration (pass the ARN instead)")
            elif any(w in var for w in ("SECRET", "TOKEN")) and not var.endswith("_ARN"):
                errors.append(f"{name}: {var} puts a secret in the configuration")
        log_group = (props.get("LoggingConfig") or {}).get("LogGroup")
        group = resources.get(log_group.get("Ref")) if isinstance(log_group, dict) else None
        if not group or not group["Properties"].get("RetentionInDays"):
            errors.append(f"{name}: no log group of its own with a retention")
        if name not in table:
            errors.append(f"{name}: not in sdk-calls.yaml (list what its code calls)")
            continue
        role_ref = props.get("Role")
        role_id = role_ref.get("Fn::GetAtt", [None])[0] if isinstance(role_ref, dict) else None
        role = resources.get(role_id)
        if not role or role["Type"] != "AWS::IAM::Role":
            errors.append(f"{name}: its role is not a role of the template ({role_ref})")
            continue
        for arn in role["Properties"].get("ManagedPolicyArns") or []:
            errors.append(f"{name}: role {role_id} has the managed policy {resource_name(arn)}")
        documents = [p["PolicyDocument"] for p in role["Properties"].get("Policies") or []]
        for k, v in resources.items():
            if v["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
                if {"Ref": role_id} in (v["Properties"].get("Roles") or []):
                    documents.append(v["Properties"]["PolicyDocument"])
        granted = set()
        for doc in documents:
            for st in as_list(doc.get("Statement", [])):
                if st.get("Effect") != "Allow":
                    continue
                if "NotAction" in st or "NotResource" in st:
                    errors.append(f"{name}: a NotAction/NotResource statement")
                    continue
                for action in as_list(st.get("Action", [])):
                    for r in as_list(st.get("Resource", [])):
                        res = resource_name(r)
                        if res == "*" and action not in ONLY_ON_STAR:
                            errors.append(f"{name}: allows {action} on \"*\"")
                        granted.add((action, res, leading_keys(st)))
        expected = expected_grants(table, name)
        for action, res, cond in sorted(granted - expected, key=str):
            if res == "*" and action not in ONLY_ON_STAR:
                continue  # reported above
            how = f" where {cond[0]} {list(cond[1])}" if cond else ""
            errors.append(f"{name}: allows {action} on {res}{how}, which sdk-calls.yaml does not list")
        for action, res, cond in sorted(expected - granted, key=str):
            how = f" where {cond[0]} {list(cond[1])}" if cond else ""
            errors.append(f"{name}: misses {action} on {res}{how}, which its code calls")
    alarmed = set()
    for k, v in resources.items():
        if v["Type"] == "AWS::CloudWatch::Alarm":
            actions = json.dumps(v["Properties"].get("AlarmActions"))
            if "AlarmTopicArn" not in actions:
                errors.append(f"{k}: does not notify the AlarmTopicArn topic")
            alarmed.add(v["Properties"].get("MetricName"))
    # A public URL: floods of refused requests and its 500s must page someone (neither is a
    # function error).
    if any(v["Type"] == "AWS::Lambda::Url" for v in resources.values()):
        for metric in ("Url4xxCount", "Url5xxCount"):
            if metric not in alarmed:
                errors.append(f"the public Function URL's {metric}: no alarm watches it (nobody would notice)")
    outputs = json.dumps(template.get("Outputs") or {})
    for k, v in template["Resources"].items():
        kind = v.get("Type")
        if kind == "AWS::DynamoDB::Table":
            if v.get("DeletionPolicy") != "Retain" or v.get("UpdateReplacePolicy") != "Retain":
                errors.append(f"{k}: deleting or replacing the stack would delete its data (Retain both policies)")
        if kind in ("AWS::DynamoDB::Table", "AWS::SQS::Queue") and f'"Ref": "{k}"' not in outputs:
            errors.append(f"{k}: not in the stack's Outputs (oa --stack reads them)")
    for k, v in resources.items():
        if v["Type"] == "AWS::Logs::MetricFilter":
            for t in v["Properties"].get("MetricTransformations") or []:
                if t.get("MetricName") not in alarmed:
                    errors.append(f"{k}: counts {t.get('MetricName')}, but no alarm watches it (nobody would notice)")
    # Every alarm has its runbook row (docs/operations.md), so whoever it pages knows what to do.
    runbook_path = os.path.join(ROOT, "docs/operations.md")
    runbook = open(runbook_path).read() if os.path.exists(runbook_path) else ""
    for k, v in template["Resources"].items():
        if v.get("Type") == "AWS::CloudWatch::Alarm" and f"| `{k}` |" not in runbook:
            errors.append(f"{k}: no row in docs/operations.md's alarm table (what it means, what to run)")
    # The dashboard's cost of a function uses that function's memory size.
    dashboard = next((v for v in template["Resources"].values() if v.get("Type") == "AWS::CloudWatch::Dashboard"), None)
    if dashboard:
        body = json.dumps(dashboard["Properties"]["DashboardBody"])
        default_memory = ((template.get("Globals") or {}).get("Function") or {}).get("MemorySize", 128)
        for i, (short, logical) in enumerate([("webhook", "WebhookFunction"), ("keyword-reply", "KeywordReplyFunction"),
                                              ("tagger", "TaggerFunction"), ("campaign", "CampaignFunction"),
                                              ("multicast", "MulticastFunction")]):
            memory = template["Resources"][logical]["Properties"].get("MemorySize", default_memory)
            if f"FILL(dur{i},0)/1000*{memory}/1024" not in body:
                errors.append(f"CostDashboard: {short}'s cost does not use its MemorySize {memory}")
    # The dashboard's prices are the price table's.
    prices_path = os.path.join(ROOT, "infra/prices.yaml")
    mapped = (template.get("Mappings") or {}).get("Prices") or {}
    if mapped and os.path.exists(prices_path):
        with open(prices_path) as f:
            table_prices = yaml.safe_load(f)["regions"]
        names = {"GbSecondArm64": "lambdaGbSecondArm64", "GbSecondX86": "lambdaGbSecondX86",
                 "LambdaRequest": "lambdaRequest", "ReadUnit": "dynamodbReadUnit",
                 "WriteUnit": "dynamodbWriteUnit", "SqsRequest": "sqsRequest",
                 "SqsFifoRequest": "sqsFifoRequest", "LogsIngestedGb": "logsIngestedGb"}
        for key, region in (("tokyo", "ap-northeast-1"), ("useast1", "us-east-1")):
            for name, price in names.items():
                got = (mapped.get(key) or {}).get(name)
                want = table_prices[region][price]["usd"]
                if got is None or abs(float(got) - want) > 1e-15:
                    errors.append(f"Mappings Prices {key} {name}: {got}, but infra/prices.yaml says {want}")
    return errors


def main(argv):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    template_path = argv[1] if len(argv) > 1 else os.path.join(root, "infra/template.yaml")
    table_path = argv[2] if len(argv) > 2 else os.path.join(root, "infra/sdk-calls.yaml")
    with open(template_path) as f:
        template = yaml_parse(f.read())
    with open(table_path) as f:
        table = yaml.safe_load(f)
    errors = check(template, table)
    for e in errors:
        print(f"{template_path}: {e}", file=sys.stderr)
    if errors:
        return 1
    n = len(table)
    print(f"{template_path}: IAM and operations check passed ({n} functions, after SAM's transform)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
