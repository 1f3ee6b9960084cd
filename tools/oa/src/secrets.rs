//! The stack's one secret in Secrets Manager (`oa secrets put`): the channel secret and access
//! token asked for at a prompt that does not echo (or read from standard input, one per line, when
//! it is not a terminal), the shop secret generated here. No value is ever an argument, so none is
//! in shell history or in the process list.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use shared::adapters::sdk::describe;
use shared::secrets::SecretName;

#[derive(clap::Subcommand)]
pub enum SecretsCommand {
    /// Create or update the secret NAME: asks for the channel secret and the channel access token
    /// (checked with LINE first), keeps the shop secret it has or generates one, prints the ARN.
    Put {
        #[arg(long)]
        name: String,
        /// A new shop secret even if the secret has one (the shop backend must then sign with it).
        #[arg(long)]
        new_shop_secret: bool,
        /// Store the token without asking LINE whether it works.
        #[arg(long)]
        no_check: bool,
        /// Where LINE's API is (the token is checked there).
        #[arg(long, env = "LINE_API_BASE", default_value = "https://api.line.me")]
        line_api_base: String,
    },
    /// The ARN of the secret NAME (what the stack's SecretArn parameter takes).
    Arn {
        #[arg(long)]
        name: String,
    },
    /// Print the shop secret, for the shop backend that signs events with it.
    ShopSecret {
        #[arg(long)]
        name: String,
    },
}

/// A LINE channel secret: 32 hexadecimal characters (Basic settings in the LINE Developers console).
pub fn check_channel_secret(s: &str) -> Result<(), String> {
    if s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(format!(
            "the channel secret is 32 hexadecimal characters (Basic settings tab); this is {} characters{}",
            s.chars().count(),
            if s.bytes().all(|b| b.is_ascii_hexdigit()) { "" } else { " and not all hexadecimal" }
        ))
    }
}

/// A channel access token: printable, without spaces (Messaging API tab, "Channel access token
/// (long-lived)").
pub fn check_access_token(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("the channel access token is empty".into());
    }
    if !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the channel access token has spaces or characters a token never has".into());
    }
    Ok(())
}

/// A new shop secret: 32 random bytes from the operating system, as 64 hexadecimal characters.
pub fn new_shop_secret() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no random bytes from the operating system: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The secret's JSON: the two values given and the shop secret (kept, or new).
pub fn secret_json(channel_secret: &str, access_token: &str, shop_secret: &str) -> String {
    json!({
        SecretName::ChannelSecret.key(): channel_secret,
        SecretName::ChannelAccessToken.key(): access_token,
        SecretName::ShopEventsSecret.key(): shop_secret,
    })
    .to_string()
}

/// The keys of a secret's JSON and their values; a secret that is not a JSON object has none.
pub fn keys_of(secret_string: &str) -> BTreeMap<String, String> {
    match serde_json::from_str::<Value>(secret_string) {
        Ok(Value::Object(map)) => map.into_iter().filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_string()))).collect(),
        _ => BTreeMap::new(),
    }
}

/// Where LINE is may be plain http only on this machine (line-sim): the token would otherwise
/// cross the network in the clear.
pub fn check_line_base(base: &str) -> Result<(), String> {
    let refused = || Err(format!("LINE_API_BASE={base} is not https: the access token is not sent there"));
    let Ok(url) = reqwest::Url::parse(base) else {
        return Err(format!("LINE_API_BASE={base} is not a URL"));
    };
    if !url.username().is_empty() || url.password().is_some() {
        return refused();
    }
    let host = url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => refused(),
    }
}

/// Reads one line: at a prompt without echo on a terminal, else from standard input.
fn ask(prompt: &str) -> Result<String, String> {
    use std::io::IsTerminal;
    let line = if std::io::stdin().is_terminal() {
        rpassword::prompt_password(prompt).map_err(|e| format!("cannot read the answer: {e}"))?
    } else {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map_err(|e| format!("cannot read standard input: {e}"))?;
        line
    };
    Ok(line.trim().to_string())
}

/// Whether LINE takes the token (`GET /v2/bot/info`): the bot's name, or why not.
pub async fn check_token_with_line(base: &str, token: &str) -> Result<String, String> {
    check_line_base(base)?;
    let url = format!("{}/v2/bot/info", base.trim_end_matches('/'));
    let client =
        reqwest::Client::builder().timeout(std::time::Duration::from_secs(10)).build().map_err(|e| e.to_string())?;
    let response =
        client.get(&url).bearer_auth(token).send().await.map_err(|e| format!("cannot reach LINE at {base}: {e}"))?;
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    match status {
        200 => {
            Ok(format!("{} ({})", body["displayName"].as_str().unwrap_or("?"), body["basicId"].as_str().unwrap_or("?")))
        }
        401 => Err("LINE refused the channel access token (401): issue a long-lived token in the Messaging API \
                    tab and give that one"
            .into()),
        other => Err(format!("LINE answered {other} to GET /v2/bot/info: {}", body["message"].as_str().unwrap_or(""))),
    }
}

/// `oa secrets ...`.
pub async fn run(sdk: &aws_config::SdkConfig, command: SecretsCommand) -> Result<(), String> {
    let client = aws_sdk_secretsmanager::Client::new(sdk);
    let region = sdk.region().map(|r| r.to_string()).unwrap_or_else(|| "no region".into());
    match command {
        SecretsCommand::Arn { name } => {
            println!("{}", arn(&client, &name).await?.ok_or_else(|| format!("no secret {name} in {region}"))?);
        }
        SecretsCommand::ShopSecret { name } => {
            let keys = read(&client, &name).await?;
            let key = SecretName::ShopEventsSecret.key();
            println!("{}", keys.get(key).ok_or_else(|| format!("the secret {name} has no {key}"))?);
        }
        SecretsCommand::Put { name, new_shop_secret: rotate, no_check, line_api_base } => {
            eprintln!("target: Secrets Manager in {region}: secret {name}");
            // Where it stands before anything is typed: credentials, region, a secret being deleted.
            let existing = arn(&client, &name).await?;
            let channel_secret = ask("channel secret (LINE Developers console, Basic settings): ")?;
            check_channel_secret(&channel_secret)?;
            let token = ask("channel access token (Messaging API tab, long-lived): ")?;
            check_access_token(&token)?;
            if !no_check {
                eprintln!("LINE takes the token: bot {}", check_token_with_line(&line_api_base, &token).await?);
            }
            // Keys someone added by hand stay; the three are replaced.
            let mut others = match &existing {
                Some(_) => read(&client, &name).await?,
                None => BTreeMap::new(),
            };
            let kept = others.remove(SecretName::ShopEventsSecret.key()).filter(|s| !s.is_empty() && !rotate);
            let shop = match kept {
                Some(s) => {
                    eprintln!("shopEventsSecret: kept (--new-shop-secret makes a new one)");
                    s
                }
                None => {
                    eprintln!("shopEventsSecret: generated; the shop backend signs with it (oa secrets shop-secret --name {name})");
                    new_shop_secret()?
                }
            };
            let mut value: serde_json::Map<String, Value> =
                others.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
            if let Value::Object(three) =
                serde_json::from_str(&secret_json(&channel_secret, &token, &shop)).unwrap_or_default()
            {
                value.extend(three);
            }
            let value = Value::Object(value).to_string();
            let arn = match existing {
                Some(arn) => {
                    client
                        .put_secret_value()
                        .secret_id(&arn)
                        .secret_string(value)
                        .send()
                        .await
                        .map_err(|e| format!("cannot update the secret {name}: {}", describe(&e)))?;
                    eprintln!(
                        "updated; running functions read it again within a minute of LINE refusing the old token"
                    );
                    arn
                }
                None => {
                    let out = client
                        .create_secret()
                        .name(&name)
                        .description("LINE OA backend: channel secret, channel access token, shop events secret")
                        .secret_string(value)
                        .send()
                        .await
                        .map_err(|e| format!("cannot create the secret {name}: {}", describe(&e)))?;
                    eprintln!("created");
                    out.arn().unwrap_or_default().to_string()
                }
            };
            println!("{arn}");
        }
    }
    Ok(())
}

/// The full ARN of the secret `name` (with Secrets Manager's suffix), if it exists; a secret
/// scheduled for deletion is refused (a stack wired to it would lose it in days).
pub async fn arn(client: &aws_sdk_secretsmanager::Client, name: &str) -> Result<Option<String>, String> {
    match client.describe_secret().secret_id(name).send().await {
        Ok(out) if out.deleted_date().is_some() => Err(format!(
            "the secret {name} is scheduled for deletion: restore it first (aws secretsmanager restore-secret --secret-id {name})"
        )),
        Ok(out) => Ok(out.arn().map(str::to_string)),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_not_found_exception()) => Ok(None),
        Err(e) => Err(format!("cannot look up the secret {name}: {}", describe(&e))),
    }
}

/// The secret's keys and values.
pub async fn read(client: &aws_sdk_secretsmanager::Client, id: &str) -> Result<BTreeMap<String, String>, String> {
    let out = client
        .get_secret_value()
        .secret_id(id)
        .send()
        .await
        .map_err(|e| format!("cannot read the secret {id}: {}", describe(&e)))?;
    Ok(keys_of(out.secret_string().unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_secret_is_32_hex_characters() {
        assert!(check_channel_secret("0123456789abcdef0123456789ABCDEF").is_ok());
        assert!(check_channel_secret("0123456789abcdef").unwrap_err().contains("16 characters"));
        assert!(check_channel_secret("0123456789abcdef0123456789abcdeg").unwrap_err().contains("not all hexadecimal"));
    }

    #[test]
    fn the_token_goes_to_line_over_https_or_to_this_machine_only() {
        assert!(check_line_base("https://api.line.me").is_ok());
        assert!(check_line_base("http://127.0.0.1:8090").is_ok());
        assert!(check_line_base("http://localhost:8090/").is_ok());
        assert!(check_line_base("http://10.0.0.5:8090").unwrap_err().contains("not https"));
        assert!(check_line_base("http://127.0.0.1.evil.example").is_err());
        assert!(check_line_base("http://localhost:80@evil.example").is_err());
        assert!(check_line_base("https://user@api.line.me").is_err());
    }

    #[test]
    fn a_token_has_no_spaces() {
        assert!(check_access_token("abc+/=").is_ok());
        assert!(check_access_token("").is_err());
        assert!(check_access_token("abc def").is_err());
    }

    #[test]
    fn a_new_shop_secret_is_64_hex_characters_and_never_the_same() {
        let (a, b) = (new_shop_secret().unwrap(), new_shop_secret().unwrap());
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn the_secret_has_the_three_keys_the_functions_read() {
        let keys = keys_of(&secret_json("s", "t", "h"));
        assert_eq!(keys.get("channelSecret").map(String::as_str), Some("s"));
        assert_eq!(keys.get("channelAccessToken").map(String::as_str), Some("t"));
        assert_eq!(keys.get("shopEventsSecret").map(String::as_str), Some("h"));
        assert!(keys_of("not json").is_empty());
    }
}
