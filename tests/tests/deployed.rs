//! The paths that only a deployed stack takes, against moto (which serves CloudFormation beside
//! SQS and Secrets Manager): `oa --stack NAME` reads the stack's Outputs, so no table or queue name
//! is typed by hand.

use std::process::Command;

use integration_tests::*;
use shared::adapters::dynamodb::rules::RulesStore;

fn oa_binary() -> std::path::PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(Into::into).unwrap_or_else(|| repo_root().join("target"));
    let path = target.join("debug/oa");
    assert!(path.exists(), "{} is missing: build it with `cargo build -p oa` (make test does)", path.display());
    path
}

/// `oa ARGS` as against AWS (no --local), with CloudFormation served by moto.
fn oa(args: &[&str]) -> (bool, String) {
    let out = Command::new(oa_binary())
        .current_dir(std::env::temp_dir())
        .env("AWS_ENDPOINT_URL_CLOUDFORMATION", setting("AWS_ENDPOINT_URL_SQS"))
        .args(args)
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

#[tokio::test]
async fn oa_with_a_stack_name_finds_its_tables_in_the_stacks_outputs() {
    let stack = TestStack::new().await;
    let name = format!("oa-{}", ulid::Ulid::new().to_string().to_lowercase());
    // A stack whose Outputs name this test's tables, as the template's do.
    let template = serde_json::json!({
        "Resources": { "Probe": { "Type": "AWS::SQS::Queue", "Properties": { "QueueName": format!("{name}-probe") } } },
        "Outputs": {
            "RulesTable": { "Value": stack.table("RulesTable") },
            "TagsTable": { "Value": stack.table("TagsTable") },
            "UsersTable": { "Value": stack.table("UsersTable") },
        },
    });
    let cfn = aws_sdk_cloudformation::Client::from_conf(
        aws_sdk_cloudformation::config::Builder::from(&stack.sdk).endpoint_url(setting("AWS_ENDPOINT_URL_SQS")).build(),
    );
    cfn.create_stack().stack_name(&name).template_body(template.to_string()).send().await.unwrap();

    let rules = repo_root().join("examples/bakery-rules.yaml");
    let (ok, out) = oa(&["--stack", &name, "rules", "apply", rules.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(out.contains(stack.table("RulesTable")), "the target is named: {out}");
    let store = RulesStore::new(stack.dynamodb.clone(), stack.table("RulesTable"));
    assert_eq!(store.current_version().await.unwrap(), Some(1), "the rules went to the stack's rules table");

    let (ok, out) = oa(&["--stack", "no-such-stack", "rules", "list"]);
    assert!(!ok && out.contains("--stack no-such-stack"), "{out}");
}
