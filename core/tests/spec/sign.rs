//! Signatures of control commands and fire events.

use chrono::Utc;
use sundial_core::{
    job::{Executor, Overlap, RetryPolicy, ShellExecutor},
    protocol::fire::FireEvent,
    sign::{sign_command, sign_fire, verify_command, verify_fire, SignError},
    HumanDuration,
};

const KEY: &[u8] = b"0123456789abcdef-test-key";

#[test]
fn a_signed_command_verifies_and_any_change_breaks_it() {
    let body = br#"{"command":"delete","id":"a"}"#;
    let sig = sign_command(KEY, 1_000, None, body);
    assert_eq!(sig.len(), 64, "hex SHA-256");
    assert_eq!(
        verify_command(KEY, Some(&sig), Some(1_000), None, body, 1_010),
        Ok(())
    );
    assert_eq!(
        verify_command(
            b"another-key-0123456",
            Some(&sig),
            Some(1_000),
            None,
            body,
            1_010
        ),
        Err(SignError::Mismatch)
    );
    assert_eq!(
        verify_command(KEY, Some(&sig), Some(1_001), None, body, 1_010),
        Err(SignError::Mismatch),
        "the time is signed too"
    );
    assert_eq!(
        verify_command(
            KEY,
            Some(&sig),
            Some(1_000),
            None,
            br#"{"command":"delete","id":"b"}"#,
            1_010
        ),
        Err(SignError::Mismatch)
    );
    assert_eq!(
        verify_command(KEY, Some("zz"), Some(1_000), None, body, 1_010),
        Err(SignError::Mismatch)
    );
}

#[test]
fn a_nonce_is_signed_and_makes_the_same_command_in_one_second_another_signature() {
    let body = br#"{"command":"trigger","id":"a"}"#;
    let a = sign_command(KEY, 1_000, Some("n-1"), body);
    let b = sign_command(KEY, 1_000, Some("n-2"), body);
    assert_ne!(a, b, "two honest repeats in one second differ");
    assert_ne!(a, sign_command(KEY, 1_000, None, body));
    assert_eq!(
        verify_command(KEY, Some(&a), Some(1_000), Some("n-1"), body, 1_000),
        Ok(())
    );
    assert_eq!(
        verify_command(KEY, Some(&a), Some(1_000), Some("n-2"), body, 1_000),
        Err(SignError::Mismatch),
        "the nonce is signed"
    );
    assert_eq!(
        verify_command(KEY, Some(&a), Some(1_000), None, body, 1_000),
        Err(SignError::Mismatch),
        "a nonce cannot be dropped"
    );
    let long = "n".repeat(129);
    for bad in ["", "with space", long.as_str()] {
        assert_eq!(
            verify_command(KEY, Some(&a), Some(1_000), Some(bad), body, 1_000),
            Err(SignError::BadNonce),
            "{bad:?}"
        );
    }
}

#[test]
fn unsigned_old_and_future_commands_are_refused() {
    let body = b"{}";
    assert!(matches!(
        verify_command(KEY, None, Some(1), None, body, 1),
        Err(SignError::Missing(_))
    ));
    assert!(matches!(
        verify_command(KEY, Some("00"), None, None, body, 1),
        Err(SignError::Missing(_))
    ));
    let old = sign_command(KEY, 1_000, None, body);
    assert!(matches!(
        verify_command(KEY, Some(&old), Some(1_000), None, body, 1_000 + 301),
        Err(SignError::TooOld { .. })
    ));
    assert!(matches!(
        verify_command(KEY, Some(&old), Some(1_000), None, body, 1_000 - 61),
        Err(SignError::FromTheFuture { .. })
    ));
}

fn shell_fire() -> FireEvent {
    FireEvent {
        fire_id: "backup@2026-01-01T03:00:00.000Z".into(),
        job_id: "backup".into(),
        pool: "default".into(),
        shard: 1,
        epoch: 1,
        scheduled_at: Utc::now(),
        fired_at: Utc::now(),
        attempt: 1,
        manual: false,
        executor: Executor::Shell(ShellExecutor {
            command: vec!["/usr/local/bin/backup.sh".into()],
            env: Default::default(),
            cwd: None,
        }),
        payload: serde_json::json!({"full": true}),
        timeout: HumanDuration::from_secs(60),
        retry: RetryPolicy::default(),
        overlap: Overlap::Allow,
        first_failure: None,
        signature: None,
    }
}

#[test]
fn a_fire_signature_survives_retries_but_not_a_changed_command() {
    let mut f = shell_fire();
    assert_eq!(verify_fire(KEY, &f), Err(SignError::UnsignedFire));
    f.signature = Some(sign_fire(KEY, &f));
    assert_eq!(verify_fire(KEY, &f), Ok(()));
    let mut retry = f.clone();
    retry.attempt = 3;
    retry.first_failure = Some(Utc::now());
    assert_eq!(
        verify_fire(KEY, &retry),
        Ok(()),
        "retries keep the signature"
    );
    let mut evil = f.clone();
    evil.executor = Executor::Shell(ShellExecutor {
        command: vec!["/bin/rm".into(), "-rf".into(), "/".into()],
        env: Default::default(),
        cwd: None,
    });
    assert_eq!(verify_fire(KEY, &evil), Err(SignError::FireMismatch));
    assert_eq!(
        verify_fire(b"wrong-key-0123456789", &f),
        Err(SignError::FireMismatch)
    );
}
