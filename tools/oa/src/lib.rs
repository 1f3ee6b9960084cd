//! The `oa` CLI's library: the local-stack provisioner ([`stack`]), the local event-source
//! poller ([`poller`]), rules as code ([`rules`]) and builders for signed test webhooks and shop
//! events ([`sample`]), which stack a command talks to ([`target`]), and the operations after a
//! deploy: the secret ([`secrets`]), dead letters ([`dlq`]) and the stack's check-up
//! ([`doctor`]). The integration tests use them all.

pub mod campaigns;
pub mod costs;
pub mod dlq;
pub mod doctor;
pub mod friends;
pub mod front;
pub mod poller;
pub mod rules;
pub mod sample;
pub mod secrets;
pub mod segments;
pub mod stack;
pub mod target;

/// Posts `body` to `url` with `signature_header` = the body's signature under `secret`.
pub async fn post_signed(
    client: &reqwest::Client,
    url: &str,
    signature_header: &str,
    secret: &str,
    body: Vec<u8>,
) -> Result<(u16, String), reqwest::Error> {
    let signature = shared::line::signature::sign(secret, &body);
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .header(signature_header, signature)
        .body(body)
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.text().await?))
}
