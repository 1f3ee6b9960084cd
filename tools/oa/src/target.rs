//! Which stack a command talks to.
//!
//! - **The local stack** with `--local`, and always for the commands that only make sense locally
//!   (`oa local ...`, `oa sim ...`): settings come from `.local/run.env` (the running stack's
//!   effective settings, moved ports included), then `local.env`. Their `AWS_*` values (the
//!   emulators' endpoints and fake keys) replace whatever the shell has, so real credentials are
//!   never sent to a local emulator; other settings already in the environment win.
//! - **AWS** otherwise: nothing is loaded from any file. Tables and URLs come from flags or the
//!   environment (`RULES_TABLE=<stack>-rules`), credentials and region from the SDK's usual chain.
//!
//! Commands that change something print the target they are about to touch first.

use std::path::Path;

/// The files the local stack's settings come from, first match wins (relative to the repository's
/// root: the working directory or the nearest one above it with `local.env`).
pub const LOCAL_FILES: [&str; 2] = [".local/run.env", "local.env"];

/// The repository's root as seen from `dir`: `dir` or the nearest directory above it that holds
/// `local.env` and `infra/template.yaml`.
pub fn repository_root(dir: &Path) -> Option<std::path::PathBuf> {
    dir.ancestors()
        .find(|d| d.join("local.env").is_file() && d.join("infra/template.yaml").is_file())
        .map(Path::to_path_buf)
}

/// A deployed stack's Outputs and the setting each gives (`oa --stack NAME`); the URLs are the
/// Function URL's base, to which the route is added.
const STACK_OUTPUTS: [(&str, &str, &str); 16] = [
    ("EventsTable", "EVENTS_TABLE", ""),
    ("UsersTable", "USERS_TABLE", ""),
    ("TagsTable", "TAGS_TABLE", ""),
    ("RulesTable", "RULES_TABLE", ""),
    ("CampaignsTable", "CAMPAIGNS_TABLE", ""),
    ("ReplyQueueUrl", "REPLY_QUEUE_URL", ""),
    ("TagQueueUrl", "TAG_QUEUE_URL", ""),
    ("CampaignQueueUrl", "CAMPAIGN_QUEUE_URL", ""),
    ("MulticastQueueUrl", "MULTICAST_QUEUE_URL", ""),
    ("ReplyDeadLetterQueueUrl", "REPLY_DLQ_URL", ""),
    ("TagDeadLetterQueueUrl", "TAG_DLQ_URL", ""),
    ("CampaignDeadLetterQueueUrl", "CAMPAIGN_DLQ_URL", ""),
    ("MulticastDeadLetterQueueUrl", "MULTICAST_DLQ_URL", ""),
    ("WebhookUrl", "WEBHOOK_URL", "webhook"),
    ("EventsUrl", "EVENTS_URL", "events"),
    ("SecretArn", "LINE_SECRET_ARN", ""),
];

/// The global `--stack NAME` (given before the command), if any.
pub fn stack_name(args: &[String]) -> Option<String> {
    let mut words = args.iter().skip(1);
    while let Some(a) = words.next() {
        if let Some(name) = a.strip_prefix("--stack=") {
            return Some(name.to_string());
        }
        if a == "--stack" {
            return words.next().cloned();
        }
        if !a.starts_with('-') || a == "--" {
            return None;
        }
    }
    None
}

/// A deployed stack's Parameters that give a setting: where its functions reach LINE is where
/// `oa` reaches it too (not wherever the shell's `LINE_API_BASE` points).
const STACK_PARAMETERS: [(&str, &str); 4] = [
    ("LineApiBase", "LINE_API_BASE"),
    // What `oa costs` prices: the architecture's GB-second, and which spend alarms exist.
    ("Architecture", "ARCHITECTURE"),
    ("DailyBillableMessagesThreshold", "DAILY_BILLABLE_MESSAGES_THRESHOLD"),
    ("MonthlyLineSpendThreshold", "MONTHLY_LINE_SPEND_THRESHOLD"),
];

/// What a deployed stack's Outputs and Parameters do to the environment: every table's and queue's
/// variable, the webhook and events URLs, the secret's ARN and the LINE API base, each
/// `(name, Some(value))` to set, or `(name, None)` to remove when the stack gives none (so nothing
/// the shell had stands in for the stack's own).
pub fn stack_settings(outputs: &[(String, String)], parameters: &[(String, String)]) -> Vec<(String, Option<String>)> {
    let find = |list: &[(String, String)], key: &str| list.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let from_outputs = STACK_OUTPUTS.iter().map(|(key, var, route)| {
        let value = find(outputs, key).map(|value| {
            if route.is_empty() {
                value
            } else {
                format!("{}/{route}", value.trim_end_matches('/'))
            }
        });
        (var.to_string(), value)
    });
    let from_parameters = STACK_PARAMETERS.iter().map(|(key, var)| (var.to_string(), find(parameters, key)));
    from_outputs.chain(from_parameters).collect()
}

/// Subcommands that only ever talk to the local stack.
const LOCAL_ONLY: [&str; 2] = ["local", "sim"];

/// Whether the command line aims at the local stack (see the module docs).
pub fn is_local(args: &[String]) -> bool {
    let args: Vec<&str> = args.iter().skip(1).map(String::as_str).take_while(|a| *a != "--").collect();
    args.contains(&"--local") || args.iter().find(|a| !a.starts_with('-')).is_some_and(|c| LOCAL_ONLY.contains(c))
}

/// Settings as `(name, value)` pairs.
pub type Settings = Vec<(String, String)>;

/// The local settings, in the order they apply (the first file that sets a name wins), and the
/// files read.
pub fn local_settings(root: &Path) -> Result<(Settings, Vec<String>), String> {
    let mut settings: Vec<(String, String)> = vec![];
    let mut read = vec![];
    for file in LOCAL_FILES {
        let path = root.join(file);
        if !path.exists() {
            continue;
        }
        let items = dotenvy::from_path_iter(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        for item in items {
            let (name, value) = item.map_err(|e| format!("{}: {e}", path.display()))?;
            if !settings.iter().any(|(n, _)| *n == name) {
                settings.push((name, value));
            }
        }
        read.push(file.to_string());
    }
    if read.is_empty() {
        return Err(format!(
            "--local: no local.env in {} or any directory above it; run oa inside the repository",
            root.display()
        ));
    }
    Ok((settings, read))
}

/// What applying `settings` changes in an environment that holds `current`: `(name, Some(value))`
/// to set, `(name, None)` to remove. `AWS_*` settings always replace; others only fill gaps. A
/// session token from the shell is removed: it belongs to real credentials.
pub fn local_changes(
    settings: &[(String, String)],
    current: impl Fn(&str) -> Option<String>,
) -> Vec<(String, Option<String>)> {
    let mut changes: Vec<(String, Option<String>)> = settings
        .iter()
        .filter(|(name, _)| name.starts_with("AWS_") || current(name).is_none())
        .map(|(name, value)| (name.clone(), Some(value.clone())))
        .collect();
    if current("AWS_SESSION_TOKEN").is_some() && !settings.iter().any(|(n, _)| n == "AWS_SESSION_TOKEN") {
        changes.push(("AWS_SESSION_TOKEN".into(), None));
    }
    changes
}

/// One line naming where a change goes: the local stack's endpoint, or AWS with its region.
pub fn describe(local: bool, service_endpoint: Option<&str>, region: Option<&str>, what: &str) -> String {
    match (local, service_endpoint) {
        (true, Some(endpoint)) => format!("target: the LOCAL stack ({endpoint}): {what}"),
        (true, None) => format!("target: the LOCAL stack: {what}"),
        (false, Some(endpoint)) => format!("target: {endpoint} (from AWS_ENDPOINT_URL_* in the environment): {what}"),
        (false, None) => format!("target: AWS, region {}: {what}", region.unwrap_or("(none set)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &str) -> Vec<String> {
        std::iter::once("oa").chain(a.split_whitespace()).map(str::to_string).collect()
    }

    #[test]
    fn local_only_with_the_flag_or_for_local_commands() {
        assert!(!is_local(&args("rules apply examples/bakery-rules.yaml")));
        assert!(is_local(&args("--local rules apply f.yaml")));
        assert!(is_local(&args("rules apply f.yaml --local")));
        assert!(is_local(&args("sim deliveries U1")));
        assert!(is_local(&args("local provision")));
        assert!(!is_local(&args("rules test -- --local")), "after -- it is a value");
        assert!(!is_local(&args("segment count local")), "a value named local is not the command");
    }

    #[test]
    fn local_aws_settings_replace_the_shell_s_and_others_fill_gaps() {
        let settings = vec![
            ("AWS_ACCESS_KEY_ID".to_string(), "local".to_string()),
            ("AWS_ENDPOINT_URL_DYNAMODB".to_string(), "http://127.0.0.1:8000".to_string()),
            ("RULES_TABLE".to_string(), "oa-local-rules".to_string()),
        ];
        let shell = |n: &str| match n {
            "AWS_ACCESS_KEY_ID" => Some("AKIAREAL".to_string()),
            "AWS_SESSION_TOKEN" => Some("real-session".to_string()),
            "RULES_TABLE" => Some("mine".to_string()),
            _ => None,
        };
        let changes = local_changes(&settings, shell);
        assert!(changes.contains(&("AWS_ACCESS_KEY_ID".into(), Some("local".into()))));
        assert!(changes.contains(&("AWS_ENDPOINT_URL_DYNAMODB".into(), Some("http://127.0.0.1:8000".into()))));
        assert!(changes.contains(&("AWS_SESSION_TOKEN".into(), None)));
        assert!(!changes.iter().any(|(n, _)| n == "RULES_TABLE"), "the shell's table wins");
    }

    #[test]
    fn the_target_line_says_local_or_aws() {
        assert!(describe(true, Some("http://127.0.0.1:8000"), None, "table t").contains("LOCAL"));
        let aws = describe(false, None, Some("ap-northeast-1"), "table prod-rules");
        assert!(aws.contains("AWS, region ap-northeast-1") && aws.contains("prod-rules"), "{aws}");
    }

    #[test]
    fn the_repository_is_found_from_any_directory_inside_it() {
        let root = std::env::temp_dir().join(format!("oa-root-{}", std::process::id()));
        std::fs::create_dir_all(root.join("infra")).unwrap();
        std::fs::create_dir_all(root.join("docs/deep/er")).unwrap();
        std::fs::write(root.join("infra/template.yaml"), "Resources: {}\n").unwrap();
        std::fs::write(root.join("local.env"), "RULES_TABLE=oa-local-rules\n").unwrap();
        assert_eq!(repository_root(&root.join("docs/deep/er")), Some(root.clone()));
        assert_eq!(repository_root(&root), Some(root.clone()));
        // A directory with only a local.env of its own is not a repository.
        std::fs::write(root.join("docs/local.env"), "X=1\n").unwrap();
        assert_eq!(repository_root(&root.join("docs/deep")), Some(root.clone()));
        assert_eq!(repository_root(&std::env::temp_dir()), None);
        let (settings, read) = local_settings(&repository_root(&root.join("docs")).unwrap()).unwrap();
        assert_eq!((settings[0].0.as_str(), read), ("RULES_TABLE", vec!["local.env".to_string()]));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_stacks_outputs_name_its_tables_queues_urls_and_secret() {
        let args = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert_eq!(stack_name(&args("oa --stack prod rules list")), Some("prod".into()));
        assert_eq!(stack_name(&args("oa --stack=prod rules list")), Some("prod".into()));
        // The local poller's own --stack is not the global one.
        assert_eq!(stack_name(&args("oa local poll --stack oa-local")), None);
        let outputs: Vec<(String, String)> = [
            ("RulesTable", "prod-rules"),
            ("MulticastQueueUrl", "https://sqs.ap-northeast-1.amazonaws.com/123456789012/prod-multicast"),
            ("WebhookUrl", "https://abc.lambda-url.ap-northeast-1.on.aws/"),
            ("EventsUrl", "https://abc.lambda-url.ap-northeast-1.on.aws/"),
            ("SomethingElse", "x"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let parameters = vec![
            ("LineApiBase".to_string(), "https://api.line.me".to_string()),
            ("Architecture".to_string(), "x86_64".to_string()),
        ];
        let settings = stack_settings(&outputs, &parameters);
        let get = |n: &str| settings.iter().find(|(k, _)| k == n).and_then(|(_, v)| v.as_deref());
        assert_eq!(get("RULES_TABLE"), Some("prod-rules"));
        assert_eq!(
            get("MULTICAST_QUEUE_URL"),
            Some("https://sqs.ap-northeast-1.amazonaws.com/123456789012/prod-multicast")
        );
        assert_eq!(get("WEBHOOK_URL"), Some("https://abc.lambda-url.ap-northeast-1.on.aws/webhook"));
        assert_eq!(get("EVENTS_URL"), Some("https://abc.lambda-url.ap-northeast-1.on.aws/events"));
        assert_eq!(get("LINE_API_BASE"), Some("https://api.line.me"));
        assert_eq!(get("ARCHITECTURE"), Some("x86_64"));
        // What the stack does not give is removed, not left to the shell.
        assert_eq!(settings.iter().filter(|(_, v)| v.is_some()).count(), 6);
        assert!(settings.iter().any(|(k, v)| k == "USERS_TABLE" && v.is_none()));
    }
}
