//! HMAC-SHA256 signatures (`control.hmac_key`): control commands are signed
//! by clients and verified by the scheduler; fire events are signed by the
//! scheduler and verified by workers before running any fire.
//!
//! Command signature: `hex(HMAC(key, "{signed_at}\n{nonce}\n" ++ body))`,
//! sent in the headers [`SIGNATURE_HEADER`], [`SIGNED_AT_HEADER`] (Unix
//! seconds) and [`NONCE_HEADER`] (unique per command, so the same command
//! sent twice in one second is two commands). Without a nonce header the
//! signed text is `"{signed_at}\n" ++ body` (clients before the nonce). A
//! command signed more than [`MAX_AGE`] ago (or more than [`MAX_SKEW`] in the
//! future) is refused, so a captured command cannot be replayed later; the
//! scheduler also refuses a signature it has already seen within the window.
//!
//! Fire signature: `hex(HMAC(key, JSON [fire_id, job_id, executor,
//! payload]))` in `FireEvent::signature`: it covers what the job will do, not
//! the attempt number, so retries keep it.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// What a fire-event signature covers and where it is kept: implemented by
/// `protocol::fire::FireEvent` (this module stays below the protocol).
pub trait SignedFire {
    /// The bytes signed: what the fire will run.
    fn signed_content(&self) -> Vec<u8>;
    /// The signature the event carries, if any.
    fn signature(&self) -> Option<&str>;
}

/// Hex HMAC-SHA256 of a control command.
pub const SIGNATURE_HEADER: &str = "x-sundial-signature";
/// When it was signed, Unix seconds (integer or decimal string).
pub const SIGNED_AT_HEADER: &str = "x-sundial-signed-at";
/// A value unique to each signed command (1-128 printable ASCII bytes).
pub const NONCE_HEADER: &str = "x-sundial-nonce";
/// Longest nonce accepted.
pub const MAX_NONCE_LEN: usize = 128;
/// Oldest signed command accepted.
pub const MAX_AGE: Duration = Duration::from_secs(300);
/// Clock skew tolerated for commands "from the future".
pub const MAX_SKEW: Duration = Duration::from_secs(60);

/// Why a signature was refused; the message is the reply's error text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("missing {0} header: commands must be signed (control.hmac_key is set)")]
    Missing(&'static str),
    #[error("{SIGNATURE_HEADER} does not match: wrong key or altered body")]
    Mismatch,
    #[error("signed {age_secs} s ago; commands older than {max_secs} s are refused (replay)")]
    TooOld { age_secs: i64, max_secs: u64 },
    #[error("signed {ahead_secs} s in the future; check the client's clock")]
    FromTheFuture { ahead_secs: i64 },
    #[error(
        "this signature was already used (replay); send a new {NONCE_HEADER} with each command"
    )]
    Replayed,
    #[error("{NONCE_HEADER} must be 1-{MAX_NONCE_LEN} printable ASCII bytes")]
    BadNonce,
    #[error("unsigned fire event: control.hmac_key is set, so workers run only fires signed by a scheduler")]
    UnsignedFire,
    #[error("fire signature does not match: signed with another key, or the fire was altered")]
    FireMismatch,
}

fn mac(key: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length; this cannot fail.
    <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn command_mac(key: &[u8], signed_at: i64, nonce: Option<&str>, body: &[u8]) -> Hmac<Sha256> {
    let mut m = mac(key);
    m.update(format!("{signed_at}\n").as_bytes());
    if let Some(n) = nonce {
        m.update(n.as_bytes());
        m.update(b"\n");
    }
    m.update(body);
    m
}

/// The HMAC-SHA256 of `body` with `key`, hex: an alert webhook's
/// `X-Sundial-Signature: sha256=…` (the receiver computes the same over the
/// bytes it got).
pub fn sign_body(key: &[u8], body: &[u8]) -> String {
    let mut m = mac(key);
    m.update(body);
    hex(&m.finalize().into_bytes())
}

/// The signature of a command body signed at `signed_at` (Unix seconds)
/// with `nonce` (sent as [`NONCE_HEADER`]; `None` for the form without).
pub fn sign_command(key: &[u8], signed_at: i64, nonce: Option<&str>, body: &[u8]) -> String {
    hex(&command_mac(key, signed_at, nonce, body)
        .finalize()
        .into_bytes())
}

/// Checks a command's signature and age at `now` (Unix seconds). Constant
/// time comparison.
pub fn verify_command(
    key: &[u8],
    signature: Option<&str>,
    signed_at: Option<i64>,
    nonce: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), SignError> {
    let signature = signature.ok_or(SignError::Missing(SIGNATURE_HEADER))?;
    let signed_at = signed_at.ok_or(SignError::Missing(SIGNED_AT_HEADER))?;
    if let Some(n) = nonce {
        if n.is_empty() || n.len() > MAX_NONCE_LEN || !n.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(SignError::BadNonce);
        }
    }
    let given = unhex(signature.trim()).ok_or(SignError::Mismatch)?;
    command_mac(key, signed_at, nonce, body)
        .verify_slice(&given)
        .map_err(|_| SignError::Mismatch)?;
    let age = now - signed_at;
    if age > MAX_AGE.as_secs() as i64 {
        return Err(SignError::TooOld {
            age_secs: age,
            max_secs: MAX_AGE.as_secs(),
        });
    }
    if -age > MAX_SKEW.as_secs() as i64 {
        return Err(SignError::FromTheFuture { ahead_secs: -age });
    }
    Ok(())
}

/// The signature of a fire event (what it will run).
pub fn sign_fire(key: &[u8], f: &impl SignedFire) -> String {
    let mut m = mac(key);
    m.update(&f.signed_content());
    hex(&m.finalize().into_bytes())
}

/// Checks a fire event's signature.
pub fn verify_fire(key: &[u8], f: &impl SignedFire) -> Result<(), SignError> {
    let given = f
        .signature()
        .ok_or(SignError::UnsignedFire)
        .and_then(|s| unhex(s).ok_or(SignError::FireMismatch))?;
    let mut m = mac(key);
    m.update(&f.signed_content());
    m.verify_slice(&given).map_err(|_| SignError::FireMismatch)
}
