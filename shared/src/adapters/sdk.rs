//! AWS SDK errors, for every adapter that calls AWS (DynamoDB, SQS, Secrets Manager).

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// A one-line description of an AWS SDK error: the service's `code: message` when it answered,
/// else the transport problem (timeout, connection refused, ...) with its causes.
pub fn describe<E, R>(e: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match e {
        SdkError::ServiceError(se) => {
            let err = se.err();
            format!("{}: {}", err.code().unwrap_or("error"), err.message().unwrap_or("(no message)"))
        }
        other => chain(other),
    }
}

/// An error with its causes, on one line ("connection refused" is often only in a cause).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
