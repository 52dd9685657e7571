//! Turning libvirt errors into classified [`DriverError`]s.
//!
//! The class tells the engine what to do: retry later (`Transient`), give up on the VM
//! (`Permanent`), try another destination (`DestinationRefused`), or look at the hosts first
//! (`Indeterminate`, only for calls that change state).

use vmove_driver::{DriverError, ErrorClass};

/// libvirt error codes we classify (`virErrorNumber`).
pub mod code {
    /// `VIR_ERR_INTERNAL_ERROR`: internal error (also "Unable to find an unused port").
    pub const INTERNAL_ERROR: i32 = 1;
    /// `VIR_ERR_OPERATION_FAILED`: operation failed (also a migration that failed on the way).
    pub const OPERATION_FAILED: i32 = 9;
    /// `VIR_ERR_SYSTEM_ERROR`: a system call failed (I/O, a lost connection).
    pub const SYSTEM_ERROR: i32 = 38;
    /// `VIR_ERR_NO_DOMAIN`: no such domain.
    pub const NO_DOMAIN: i32 = 42;
    /// `VIR_ERR_AUTH_FAILED`: authentication failed.
    pub const AUTH_FAILED: i32 = 45;
    /// `VIR_ERR_NO_STORAGE_POOL`: no such storage pool.
    pub const NO_STORAGE_POOL: i32 = 49;
    /// `VIR_ERR_NO_STORAGE_VOL`: no such storage volume.
    pub const NO_STORAGE_VOL: i32 = 50;
    /// `VIR_ERR_OPERATION_INVALID`: operation not valid now ("another migration job", "active block job", "not running").
    pub const OPERATION_INVALID: i32 = 55;
    /// `VIR_ERR_OPERATION_TIMEOUT`: timed out (the job lock held by a backup: "cannot acquire state change lock").
    pub const OPERATION_TIMEOUT: i32 = 68;
    /// `VIR_ERR_OPERATION_ABORTED`: aborted (by `virDomainAbortJob`).
    pub const OPERATION_ABORTED: i32 = 78;
    /// `VIR_ERR_STORAGE_VOL_EXIST`: the volume already exists.
    pub const STORAGE_VOL_EXIST: i32 = 90;
    /// `VIR_ERR_NO_DOMAIN_BACKUP`: no backup job.
    pub const NO_DOMAIN_BACKUP: i32 = 104;
    /// `VIR_ERR_OPERATION_UNSUPPORTED`: e.g. job statistics asked of a migration's incoming
    /// domain ("only on the source").
    pub const OPERATION_UNSUPPORTED: i32 = 84;
    /// `VIR_ERR_NO_NETWORK`: no such network ("Network not found: no network with matching
    /// name 'x'").
    pub const NO_NETWORK: i32 = 43;
    /// `VIR_ERR_NO_NODE_DEVICE`: no such host device.
    pub const NO_NODE_DEVICE: i32 = 53;
    /// `VIR_ERR_NO_INTERFACE`: no such host interface (a bridge the host lacks).
    pub const NO_INTERFACE: i32 = 57;
    /// `VIR_ERR_CONFIG_UNSUPPORTED`: the configuration asks what the hypervisor cannot do.
    pub const CONFIG_UNSUPPORTED: i32 = 67;
    /// `VIR_ERR_CPU_INCOMPATIBLE`: the guest CPU is not one this host can provide.
    pub const CPU_INCOMPATIBLE: i32 = 91;
}

/// Messages of failures that no wait will change, whatever their error code (the VM's own
/// configuration or metadata), with where libvirt (9.0) raises them:
const PERMANENT_MESSAGES: &[&str] = &[
    // src/qemu/qemu_migration.c, qemuMigrationSrcIsAllowed: VIR_ERR_OPERATION_INVALID
    // "cannot migrate domain with %d snapshots".
    "cannot migrate domain with",
    // src/qemu/qemu_driver.c, qemuDomainUndefineFlags: VIR_ERR_OPERATION_INVALID
    // "Refusing to undefine while domain managed save image exists".
    "managed save image exists",
    // src/qemu/qemu_driver.c, qemuDomainUndefineFlags: VIR_ERR_OPERATION_INVALID
    // "cannot delete inactive domain with %d snapshots".
    "cannot delete inactive domain with",
    // src/qemu/qemu_migration.c, qemuMigrationSrcIsAllowedHostdev: "cannot migrate a domain
    // with <hostdev mode='subsystem' type='%s'>" (VIR_ERR_OPERATION_UNSUPPORTED) and, in
    // older releases, "domain has assigned non-USB host devices" (VIR_ERR_OPERATION_INVALID).
    "<hostdev",
    "host devices",
    // src/qemu/qemu_migration.c: "migration of disk %s is not supported" /
    // "cannot migrate a domain with a vhost-user" and the like: what this VM is made of.
    "is not supported",
];

/// Messages that say only this destination lacks something:
const DESTINATION_MESSAGES: &[&str] = &[
    // src/storage_file/storage_source.c, virStorageSourceReportBrokenChain and
    // src/qemu/qemu_domain.c: VIR_ERR_SYSTEM_ERROR "Cannot access storage file '%s'" (the
    // destination's QEMU cannot open a CD-ROM or floppy image it lacks).
    "cannot access storage file",
    // src/conf/virnetworkobj.c / src/network/bridge_driver.c: VIR_ERR_NO_NETWORK
    // "Network not found: no network with matching name '%s'".
    "no network with matching name",
    // src/conf/domain_conf.c, virDomainNetResolveActualType and the bridge helpers: a
    // bridge the destination lacks ("Cannot get interface MTU on 'br0': No such device").
    "no such device",
];

/// What kind of call failed: it decides what an unclear error means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// A read-only call: never `Indeterminate`.
    Read,
    /// Preparing a migration, before the hypervisor was asked to move anything.
    Prepare,
    /// The migration call itself, or a state-changing call whose effect we cannot see.
    Change,
}

/// Classifies a libvirt error code and message.
pub fn classify(code: i32, message: &str, phase: Phase) -> ErrorClass {
    let m = message.to_ascii_lowercase();
    let has = |s: &str| m.contains(s);
    if has("no space left") || has("not enough space") || has("insufficient space") || has("enospc")
    {
        return ErrorClass::DestinationRefused;
    }
    if has("already exists with uuid") || code == code::STORAGE_VOL_EXIST {
        return ErrorClass::DestinationRefused;
    }
    if connection_lost(message) {
        return match phase {
            Phase::Change => ErrorClass::Indeterminate,
            Phase::Read | Phase::Prepare => ErrorClass::Transient,
        };
    }
    if DESTINATION_MESSAGES.iter().any(|s| has(s))
        || matches!(
            code,
            code::NO_NETWORK | code::NO_INTERFACE | code::CPU_INCOMPATIBLE
        )
    {
        return ErrorClass::DestinationRefused;
    }
    if PERMANENT_MESSAGES.iter().any(|s| has(s))
        || matches!(code, code::CONFIG_UNSUPPORTED | code::NO_NODE_DEVICE)
    {
        return ErrorClass::Permanent;
    }
    match code {
        code::NO_DOMAIN => ErrorClass::Permanent,
        code::OPERATION_TIMEOUT => ErrorClass::Transient,
        code::OPERATION_ABORTED => ErrorClass::Transient,
        code::AUTH_FAILED => ErrorClass::Permanent,
        code::OPERATION_INVALID => {
            if has("job") || has("migrat") || has("lock") {
                ErrorClass::Transient
            } else {
                ErrorClass::Permanent
            }
        }
        code::INTERNAL_ERROR if has("unused port") => ErrorClass::Transient,
        code::SYSTEM_ERROR | code::INTERNAL_ERROR
            if has("connection")
                || has("cannot recv")
                || has("cannot write")
                || has("end of file") =>
        {
            match phase {
                Phase::Change => ErrorClass::Indeterminate,
                Phase::Read | Phase::Prepare => ErrorClass::Transient,
            }
        }
        code::NO_STORAGE_POOL => ErrorClass::DestinationRefused,
        _ => ErrorClass::Transient,
    }
}

/// Whether a libvirt message says the connection to the host is gone: closed by keepalive
/// (the host answered no probe), or the socket broke. Whatever the error code, a call that
/// got it may be retried on a new connection once the host answers again.
pub fn connection_lost(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "keepalive",
        "socket is closed",
        "connection closed",
        "end of file while reading",
    ]
    .iter()
    .any(|s| m.contains(s))
}

/// Says which host a lost connection was to: `lost` are the hosts of the call whose
/// connection is gone (see `Host::shared_connection_lost`). Other errors are unchanged.
pub fn name_lost_host(mut err: DriverError, lost: &[(String, String)]) -> DriverError {
    if !connection_lost(&err.message) || lost.is_empty() {
        return err;
    }
    let who = lost
        .iter()
        .map(|(id, uri)| format!("{id} ({})", vmove_driver::redact_uris(uri)))
        .collect::<Vec<_>>()
        .join(" and ");
    err.message = format!(
        "lost the connection to {who}: its libvirtd stopped answering or went away ({})",
        err.message
    );
    err
}

/// Builds a classified [`DriverError`] from a libvirt error, with words saying what we did.
pub fn from_virt(e: &virt::error::Error, what: &str, phase: Phase) -> DriverError {
    let code = e.code().to_raw() as i32;
    let class = classify(code, e.message(), phase);
    let msg = if code == code::NO_DOMAIN {
        format!("{what}: not found ({})", e.message())
    } else {
        format!("{what}: {}", e.message())
    };
    DriverError {
        class,
        // `what` may name the host's URI, libvirt's message may quote it: no password goes on.
        message: vmove_driver::redact_uris(&msg).into_owned(),
        code: Some(i64::from(code)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ErrorClass::{DestinationRefused, Indeterminate, Permanent, Transient};
    use Phase::{Change, Prepare, Read};

    /// One row per failure libvirt gives (code, its message as libvirt words it, the phase of the
    /// call), the class it must get, and what the row guards. The messages' sources are cited
    /// at `PERMANENT_MESSAGES` / `DESTINATION_MESSAGES` and in docs/drivers/libvirt.md.
    const CASES: &[(i32, &str, Phase, ErrorClass, &str)] = &[
        (
            1,
            "internal error: unable to execute QEMU command 'migrate-start-postcopy': Postcopy must be started after migration has been started",
            Change,
            Transient,
            "post-copy asked while libvirt still mirrors the disks passes (QEMU's migration/migration.c; the lab's convergence-aids test; the simulator refuses it the same way)",
        ),
        (
            68,
            "Timed out during operation: cannot acquire state change lock (held by monitor=remoteDispatchDomainBackupBegin)",
            Change,
            Transient,
            "a backup holding the job lock passes",
        ),
        (
            42,
            "Domain not found: no domain with matching uuid",
            Read,
            Permanent,
            "no such domain",
        ),
        (
            1,
            "internal error: unable to execute QEMU command 'blockdev-add': No space left on device",
            Change,
            DestinationRefused,
            "no space on the destination (QEMU)",
        ),
        (
            38,
            "cannot allocate 1 bytes: No space left on device",
            Prepare,
            DestinationRefused,
            "no space on the destination (storage)",
        ),
        (
            55,
            "Requested operation is not valid: another migration job is already running for domain 'vm1'",
            Prepare,
            Transient,
            "another migration job passes",
        ),
        (
            55,
            "Requested operation is not valid: domain has active block job",
            Prepare,
            Transient,
            "a block job passes",
        ),
        (
            55,
            "Requested operation is not valid: domain is not running",
            Prepare,
            Permanent,
            "an invalid operation without a job does not pass",
        ),
        (
            9,
            "operation failed: domain 'vm1' already exists with uuid 1234",
            Change,
            DestinationRefused,
            "a name clash on the destination",
        ),
        (
            90,
            "storage volume 'x' exists already",
            Prepare,
            DestinationRefused,
            "a volume clash on the destination",
        ),
        (
            38,
            "Cannot recv data: Connection reset by peer",
            Change,
            Indeterminate,
            "a connection lost mid-migration: the outcome is unknown",
        ),
        (
            38,
            "Cannot recv data: Connection reset by peer",
            Read,
            Transient,
            "a connection lost on a read passes",
        ),
        (
            78,
            "operation aborted: migration out job: canceled by client",
            Change,
            Transient,
            "an aborted migration may be tried again",
        ),
        (
            1,
            "internal error: Unable to find an unused port in range 'migration' (49184-49187)",
            Change,
            Transient,
            "port exhaustion passes as migrations end",
        ),
        (
            45,
            "authentication failed",
            Read,
            Permanent,
            "an authentication failure",
        ),
        // Issue 15: failures that no wait changes.
        (
            55,
            "Requested operation is not valid: cannot migrate domain with 1 snapshots",
            Prepare,
            Permanent,
            "snapshot metadata refuses migration (prepare)",
        ),
        (
            55,
            "Requested operation is not valid: cannot migrate domain with 1 snapshots",
            Change,
            Permanent,
            "snapshot metadata refuses migration (change)",
        ),
        (
            55,
            "Requested operation is not valid: cannot delete inactive domain with 2 snapshots",
            Change,
            Permanent,
            "snapshot metadata refuses undefine",
        ),
        (
            55,
            "Requested operation is not valid: Refusing to undefine while domain managed save image exists",
            Change,
            Permanent,
            "a managed-save image refuses undefine",
        ),
        (
            38,
            "Cannot access storage file '/var/lib/libvirt/images/debian.iso': No such file or directory",
            Change,
            DestinationRefused,
            "a media file the destination lacks",
        ),
        (
            9,
            "operation failed: Cannot access storage file '/var/lib/libvirt/images/debian.iso': No such file or directory",
            Change,
            DestinationRefused,
            "a media file the destination lacks, wrapped in the migration's generic code",
        ),
        (
            43,
            "Network not found: no network with matching name 'isolated'",
            Change,
            DestinationRefused,
            "a network the destination lacks",
        ),
        (
            1,
            "Network not found: no network with matching name 'isolated'",
            Change,
            DestinationRefused,
            "a network the destination lacks, under an internal error's code",
        ),
        (
            38,
            "Cannot get interface MTU on 'br0': No such device",
            Change,
            DestinationRefused,
            "a bridge the destination lacks (QEMU)",
        ),
        (
            57,
            "Interface not found: couldn't find interface named 'br0'",
            Read,
            DestinationRefused,
            "a bridge the destination lacks (interface API)",
        ),
        (
            91,
            "the CPU is incompatible with host CPU: Host CPU does not provide required features: avx512f",
            Change,
            DestinationRefused,
            "an incompatible CPU",
        ),
        (
            84,
            "Operation not supported: cannot migrate a domain with <hostdev mode='subsystem' type='pci'>",
            Change,
            Permanent,
            "a PCI host device",
        ),
        (
            55,
            "Requested operation is not valid: domain has assigned non-USB host devices",
            Change,
            Permanent,
            "assigned host devices",
        ),
        (
            67,
            "unsupported configuration: USB device 1234:beef not found",
            Change,
            Permanent,
            "an unsupported configuration",
        ),
        (
            53,
            "Node device not found: no node device with matching name 'pci_0000_00_1f_0'",
            Change,
            Permanent,
            "a node device that is not there",
        ),
    ];

    #[test]
    fn each_libvirt_failure_gets_its_class() {
        let wrong: Vec<String> = CASES
            .iter()
            .filter_map(|&(code, message, phase, want, what)| {
                let got = classify(code, message, phase);
                (got != want).then(|| {
                    format!("{what}: code {code} {phase:?} {message:?} -> {got:?}, want {want:?}")
                })
            })
            .collect();
        assert!(wrong.is_empty(), "misclassified:\n{}", wrong.join("\n"));
    }

    #[test]
    fn a_connection_closed_by_keepalive_is_transient_and_names_the_host() {
        // The message libvirt 9 gave on the lab for a call whose connection keepalive closed
        // (lab test a_call_to_a_frozen_libvirtd_...), and libvirt's message for a call on a
        // client whose socket is closed.
        for m in [
            "internal error: connection closed due to keepalive timeout",
            "internal error: client socket is closed",
        ] {
            assert_eq!(classify(1, m, Phase::Read), ErrorClass::Transient, "{m}");
            assert_eq!(classify(1, m, Phase::Prepare), ErrorClass::Transient, "{m}");
            assert_eq!(
                classify(1, m, Phase::Change),
                ErrorClass::Indeterminate,
                "{m}"
            );
            let e = DriverError {
                class: ErrorClass::Transient,
                message: format!("cannot list VMs: {m}"),
                code: Some(1),
            };
            let named = name_lost_host(e, &[("hostB".into(), "qemu+tcp://h/system".into())]);
            assert!(
                named.message.contains("hostB (qemu+tcp://h/system)"),
                "{}",
                named.message
            );
            assert!(named.message.contains(m), "{}", named.message);
        }
        let other = DriverError::transient("cannot list VMs: out of memory");
        let same = name_lost_host(other.clone(), &[("hostB".into(), "u".into())]);
        assert_eq!(same.message, other.message);
    }
}
