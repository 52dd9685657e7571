//! Retry policy: pure functions of the settings, the VM and the attempt number.
//!
//! Backoff is exponential with jitter drawn from a seeded RNG keyed by (run seed, VM, attempt),
//! so it is deterministic and independent of the order in which events arrive.

use crate::model::ErrorClass;
use crate::spec::Settings;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Duration;

/// What to do after a failed attempt (once the VM is known to be back on its source).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAction {
    /// Try again after this delay.
    RetryAfter(Duration),
    /// Try another destination now.
    TryElsewhere,
    /// Try again now (the destination refused only because of our own leftover, now removed).
    RetryNow,
    /// Give up: attempts exhausted.
    Exhausted,
    /// Give up: retrying cannot help.
    GiveUp,
}

/// Decides what follows a failure of the given class after `attempts` attempts.
pub fn on_failure(
    settings: &Settings,
    class: ErrorClass,
    attempts: u32,
    vm_key: u64,
    other_destination_left: bool,
) -> RetryAction {
    match class {
        ErrorClass::Permanent => RetryAction::GiveUp,
        _ if attempts >= settings.max_attempts => RetryAction::Exhausted,
        ErrorClass::DestinationRefused if other_destination_left => RetryAction::TryElsewhere,
        ErrorClass::DestinationRefused => RetryAction::GiveUp,
        ErrorClass::Transient | ErrorClass::Indeterminate => {
            RetryAction::RetryAfter(backoff(settings, vm_key, attempts))
        }
    }
}

/// What follows a destination's refusal whose cause was removed (what an earlier attempt of this
/// VM left there): retry at once, the same destination allowed, if attempts are left.
pub fn after_cleared_refusal(settings: &Settings, attempts: u32) -> RetryAction {
    if attempts >= settings.max_attempts {
        RetryAction::Exhausted
    } else {
        RetryAction::RetryNow
    }
}

/// The largest doubling of `backoff_initial`: 2^30 times is far beyond any `backoff_max`, and
/// `1u32 << exp` stays in range.
const MAX_BACKOFF_DOUBLINGS: u32 = 30;

/// How far the VM's key is rotated before it is mixed into the jitter's seed, so that the run's
/// `seed` and the key do not cancel out bit for bit.
const KEY_ROTATION: u32 = 17;

/// The 64-bit golden-ratio constant (2^64 / phi, as in Fibonacci hashing): spreads consecutive
/// attempt numbers over the seed's bits.
const GOLDEN_RATIO_64: u64 = 0x9E37_79B9_7F4A_7C15;

/// FNV-1a's 64-bit offset basis.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a's 64-bit prime.
const FNV_PRIME: u64 = 0x0100_0000_01b3;

/// The delay before attempt `attempts + 1`: `backoff_initial * 2^(attempts-1)`, capped at
/// `backoff_max`, spread by +-`backoff_jitter`.
pub fn backoff(settings: &Settings, vm_key: u64, attempts: u32) -> Duration {
    let exp = attempts.saturating_sub(1).min(MAX_BACKOFF_DOUBLINGS);
    let base = settings
        .backoff_initial
        .saturating_mul(1u32 << exp)
        .min(settings.backoff_max);
    let jitter = settings.backoff_jitter.clamp(0.0, 1.0);
    if jitter == 0.0 || base.is_zero() {
        return base;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(
        settings.seed
            ^ vm_key.rotate_left(KEY_ROTATION)
            ^ u64::from(attempts).wrapping_mul(GOLDEN_RATIO_64),
    );
    let f: f64 = rng.random_range(-jitter..=jitter);
    Duration::from_secs_f64((base.as_secs_f64() * (1.0 + f)).max(0.0))
}

/// A stable 64-bit key for a VM id (FNV-1a), used to seed per-VM randomness.
pub fn vm_key(id: &str) -> u64 {
    let mut h: u64 = FNV_OFFSET;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            backoff_initial: Duration::from_secs(10),
            backoff_max: Duration::from_secs(60),
            ..Settings::default()
        }
    }

    #[test]
    fn backoff_doubles_and_caps_within_jitter() {
        let s = settings();
        for attempt in 1..8 {
            let d = backoff(&s, 42, attempt).as_secs_f64();
            let base = (10.0 * 2f64.powi(attempt as i32 - 1)).min(60.0);
            assert!(
                d >= base * 0.8 - 1e-9 && d <= base * 1.2 + 1e-9,
                "attempt {attempt}: {d} vs {base}"
            );
        }
    }

    #[test]
    fn backoff_is_deterministic_per_vm_and_attempt() {
        let s = settings();
        assert_eq!(backoff(&s, 7, 2), backoff(&s, 7, 2));
        assert_ne!(backoff(&s, 7, 2), backoff(&s, 8, 2));
    }

    #[test]
    fn no_jitter_gives_exact_base() {
        let s = Settings {
            backoff_jitter: 0.0,
            ..settings()
        };
        assert_eq!(backoff(&s, 1, 1), Duration::from_secs(10));
        assert_eq!(backoff(&s, 1, 3), Duration::from_secs(40));
        assert_eq!(backoff(&s, 1, 9), Duration::from_secs(60));
    }

    #[test]
    fn permanent_gives_up_transient_retries_until_exhausted() {
        let s = settings();
        assert_eq!(
            on_failure(&s, ErrorClass::Permanent, 1, 0, true),
            RetryAction::GiveUp
        );
        assert!(matches!(
            on_failure(&s, ErrorClass::Transient, 1, 0, true),
            RetryAction::RetryAfter(_)
        ));
        assert!(matches!(
            on_failure(&s, ErrorClass::Indeterminate, 2, 0, true),
            RetryAction::RetryAfter(_)
        ));
        assert_eq!(
            on_failure(&s, ErrorClass::Transient, 3, 0, true),
            RetryAction::Exhausted
        );
        assert_eq!(
            on_failure(&s, ErrorClass::DestinationRefused, 1, 0, true),
            RetryAction::TryElsewhere
        );
        assert_eq!(
            on_failure(&s, ErrorClass::DestinationRefused, 1, 0, false),
            RetryAction::GiveUp
        );
        assert_eq!(
            on_failure(&s, ErrorClass::DestinationRefused, 3, 0, true),
            RetryAction::Exhausted
        );
    }
}
