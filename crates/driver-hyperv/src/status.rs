//! What a VM's WMI state means to the engine: `EnabledState` as a power state and
//! `OperationalStatus` as health and activity, the seed's readings.

use crate::cim::CimInstance;
use vmove_driver::*;

/// Secondary statuses that mean "migrating" (the seed's list).
pub(crate) const MIGRATING: [u32; 4] = [32774, 32778, 32779, 32780];

/// `EnabledState` (CIM_EnabledLogicalElement) as a power state.
pub(crate) fn power_of(enabled: u32) -> PowerState {
    match enabled {
        2 => PowerState::Running,
        3 => PowerState::Off,
        6 => PowerState::Saved,
        9 => PowerState::Paused,
        4 => PowerState::Transitioning("shutting down".into()),
        10 => PowerState::Transitioning("starting".into()),
        32773 => PowerState::Transitioning("saving".into()),
        32776 => PowerState::Transitioning("pausing".into()),
        32777 => PowerState::Transitioning("resuming".into()),
        other => PowerState::Transitioning(format!("enabled state {other}")),
    }
}

/// Words for a secondary `OperationalStatus` that is another job than a migration.
fn secondary_words(s: u32) -> String {
    match s {
        32768 => "creating snapshot".into(),
        32769 => "applying snapshot".into(),
        32770 => "deleting snapshot".into(),
        32771 => "waiting to start".into(),
        32772 => "merging disks".into(),
        32773 => "exporting".into(),
        other => format!("operational status {other}"),
    }
}

/// The seed's reading of `OperationalStatus`: (health, activity).
pub fn status_of(op: &[u32]) -> (Health, Activity) {
    let primary = op.first().copied().unwrap_or(2);
    let secondary = op.get(1).copied();
    let health = match primary {
        2 => Health::Ok,
        11 => Health::InService,
        3 => Health::Bad("degraded".into()),
        5 => Health::Bad("predictive failure".into()),
        other => Health::Bad(format!("operational status {other}")),
    };
    let activity = match secondary {
        Some(32780) => Activity::MigratingIn,
        Some(s) if MIGRATING.contains(&s) => Activity::MigratingOut,
        Some(32776) if primary == 11 => Activity::BackingUp,
        None if primary == 11 => Activity::BackingUp,
        Some(s) if primary == 11 || (32768..=32773).contains(&s) => {
            Activity::OtherJob(secondary_words(s))
        }
        _ => Activity::Idle,
    };
    (health, activity)
}

/// An instance's `OperationalStatus` values.
pub(crate) fn op_status(i: &CimInstance) -> Vec<u32> {
    i.get_array("OperationalStatus")
        .iter()
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_status_rules() {
        assert_eq!(status_of(&[2]), (Health::Ok, Activity::Idle));
        assert_eq!(
            status_of(&[11, 32776]),
            (Health::InService, Activity::BackingUp)
        );
        assert_eq!(status_of(&[11]), (Health::InService, Activity::BackingUp));
        for s in [32774, 32778, 32779] {
            assert_eq!(status_of(&[11, s]).1, Activity::MigratingOut);
        }
        assert_eq!(status_of(&[11, 32780]).1, Activity::MigratingIn);
        assert_eq!(status_of(&[3]).0, Health::Bad("degraded".into()));
        assert!(matches!(status_of(&[11, 32768]).1, Activity::OtherJob(_)));
    }

    #[test]
    fn power_states_map_off_and_saved_to_offline() {
        assert!(power_of(3).is_offline());
        assert!(power_of(6).is_offline());
        assert!(power_of(2).is_live());
        assert!(matches!(power_of(32773), PowerState::Transitioning(_)));
    }
}
