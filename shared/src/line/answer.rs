//! What LINE's Messaging API answers, as values: a request accepted, or why not, and what each
//! answer means for a retry.
//!
//! LINE documents that error texts are not guaranteed, so answers are classified by status first;
//! the text only separates the two kinds of 429 (rate limit: wait; monthly limit: stop).

use std::time::Duration;

/// An answer other than success.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// 400 on reply: the token was used, expired or never issued. Retrying cannot help.
    #[error("invalid reply token")]
    InvalidReplyToken,
    /// 429 "The API rate limit has been exceeded": worth a retry later.
    #[error("rate limited")]
    RateLimited,
    /// 429 "You have reached your monthly limit": stop sending until the quota grows.
    #[error("monthly message limit reached")]
    MonthlyLimit,
    /// 409: a request with this retry key was already accepted (it was delivered).
    #[error("retry key already accepted (request {accepted_request_id:?})")]
    RetryKeyAccepted { accepted_request_id: Option<String> },
    #[error("LINE answered {status} (request {request_id:?})")]
    Server { status: u16, request_id: Option<String> },
    #[error("no answer from LINE within {0:?}")]
    Timeout(Duration),
    #[error("could not reach LINE: {0}")]
    Transport(String),
    /// No connection to LINE could be made (refused, no route, TLS failed): not a byte of the
    /// request was sent, so LINE surely has nothing.
    #[error("could not connect to LINE: {0}")]
    Unreachable(String),
    /// 401: the access token is not valid, even after reading the secret again. Every request
    /// would get this: systemic, not a problem of one message.
    #[error("LINE refused the access token (401); the secret was read again and still fails")]
    Unauthorized,
    /// 403: the channel may not use this API (plan, permission). Systemic too.
    #[error("LINE refused the request with 403: {message}")]
    Forbidden { message: String },
    /// Any other 4xx: the request itself is wrong; retrying the same request cannot help.
    #[error("LINE rejected the request with {status}: {message}")]
    Rejected { status: u16, message: String, property: Option<String>, request_id: Option<String> },
}

impl LineError {
    /// Whether the same request may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            LineError::RateLimited
                | LineError::Server { .. }
                | LineError::Timeout(_)
                | LineError::Transport(_)
                | LineError::Unreachable(_)
        )
    }

    /// Whether every request would get this answer (a dead token, a missing permission): no
    /// message is to blame, so none may be dropped for it; the caller fails loudly instead.
    pub fn is_systemic(&self) -> bool {
        matches!(self, LineError::Unauthorized | LineError::Forbidden { .. })
    }

    /// A short name for logs and counters.
    pub fn kind(&self) -> &'static str {
        match self {
            LineError::InvalidReplyToken => "invalidReplyToken",
            LineError::RateLimited => "rateLimited",
            LineError::MonthlyLimit => "monthlyLimit",
            LineError::RetryKeyAccepted { .. } => "retryKeyAccepted",
            LineError::Server { .. } => "serverError",
            LineError::Timeout(_) => "timeout",
            LineError::Transport(_) => "transport",
            LineError::Unreachable(_) => "unreachable",
            LineError::Unauthorized => "unauthorized",
            LineError::Forbidden { .. } => "forbidden",
            LineError::Rejected { .. } => "rejected",
        }
    }

    /// Whether the answer would be the same for every batch of a campaign (the messages are
    /// refused, the token or the permission): pause the campaign rather than fail each batch.
    pub fn is_campaign_wide(&self) -> bool {
        self.is_systemic()
            || matches!(self, LineError::Rejected { status: 400, property, .. }
                if property.as_deref().is_none_or(|p| p.starts_with("messages")))
    }

    /// Whether LINE may have accepted the request (a timeout or a 5xx): only its retry key may
    /// send it again.
    pub fn is_ambiguous(&self) -> bool {
        matches!(self, LineError::Server { .. } | LineError::Timeout(_) | LineError::Transport(_))
    }
}

/// A request LINE accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub request_id: Option<String>,
}
