//! The libvirt calls the `virt` crate (0.5.0) does not wrap, or wraps unsoundly, in one place.
//!
//! Every function here takes the crate's safe handles, calls `virt::sys` directly and turns the
//! result into owned Rust values. Why each one is needed:
//! - [`job_stats`], [`completed_job_stats`]: `Domain::job_stats()` builds a `Vec` from a NULL pointer when no job runs
//!   (abort in debug builds, UB in release); we call `virDomainGetJobStats` and read the typed
//!   parameters with `virTypedParamsGet*`, then free them.
//! - [`abort_job`], [`block_job_type`], [`backup_running`], [`start_post_copy`],
//!   [`max_downtime`]: not wrapped at all.
//! - [`node_memory_stats`]: `virNodeGetMemoryStats` is not wrapped (the crate has only the
//!   free memory, `MemFree`, which leaves out the page cache the kernel gives back on demand).
//! - [`copy_volume_sparse`]: pipes a sparse download stream into a sparse upload stream with
//!   `virStreamSparseRecvAll`, whose callbacks the crate does not expose.
//! - [`snapshot_count`], [`checkpoint_count`], [`compare_hypervisor_cpu`] (pre-flight): not
//!   wrapped (the crate has only the host-CPU comparison, `virConnectCompareCPU`).
//! - [`start_dirty_rate_calc`]: not wrapped; [`dirty_rate`]: the crate's
//!   `Connect::all_domain_stats` hands back raw records it does not read (and has no
//!   per-domain form, `virDomainListGetStats`).
#![allow(unsafe_code)]

use std::ffi::{CStr, c_char, c_int, c_longlong, c_void};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use virt::connect::Connect;
use virt::domain::Domain;
use virt::error::Error;
use virt::storage_vol::StorageVol;
use virt::stream::Stream;
use virt::sys;

/// The figures of a domain's current job, as far as we use them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobFigures {
    /// `virDomainJobType`: 0 none, 1 bounded, 2 unbounded, 3 completed, 4 failed, 5 cancelled.
    pub job_type: i32,
    /// `virDomainJobOperation` (4 migration in, 5 migration out, 9 backup...), if reported.
    pub operation: Option<i32>,
    /// Bytes processed / remaining / total (memory and disks together).
    pub data_processed: u64,
    /// Bytes known to remain.
    pub data_remaining: u64,
    /// Bytes expected in total.
    pub data_total: u64,
    /// Memory dirty rate in pages/s and the page size in bytes.
    pub dirty_rate_pages: Option<u64>,
    /// Memory page size in bytes.
    pub page_size: Option<u64>,
    /// Memory transfer rate, bytes/s.
    pub mem_bps: Option<u64>,
    /// Disk transfer rate, bytes/s.
    pub disk_bps: Option<u64>,
    /// Pre-copy iteration.
    pub iteration: Option<u64>,
    /// Downtime, ms: expected while the job runs, the measured pause of the switchover once a
    /// migration completed (`VIR_DOMAIN_JOB_DOWNTIME`).
    pub downtime_ms: Option<u64>,
}

/// The current job of a domain, `None` when it has none.
pub fn job_stats(dom: &Domain) -> Result<Option<JobFigures>, Error> {
    match stats(dom, 0) {
        Ok((job_type, figures)) => {
            Ok((job_type != sys::VIR_DOMAIN_JOB_NONE as c_int).then_some(figures))
        }
        // A domain that stopped has no job: a query that raced its stop is answered "domain
        // is not running" (VIR_ERR_OPERATION_INVALID). Seen on the lab (CI): a p2p migration's
        // source polled between the migration's end and its undefine (gone by the look
        // that follows: no job either).
        Err(e)
            if e.code().to_raw() as i32 == crate::error::code::OPERATION_INVALID
                && !dom.is_active().unwrap_or(false) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The statistics of the domain's last completed job, kept for the next reader
/// (`VIR_DOMAIN_JOB_STATS_COMPLETED | KEEP_COMPLETED`); `None` when it has none. On the
/// destination of a migration these are the migration's own: libvirt sends them over at its
/// end, so that they survive the source domain's undefine (libvirt's migration cookie
/// "statistics", libvir-list, J. Denemark, 2014).
pub fn completed_job_stats(dom: &Domain) -> Result<Option<JobFigures>, Error> {
    let flags = sys::VIR_DOMAIN_JOB_STATS_COMPLETED | sys::VIR_DOMAIN_JOB_STATS_KEEP_COMPLETED;
    let (job_type, figures) = stats(dom, flags)?;
    Ok((job_type == sys::VIR_DOMAIN_JOB_COMPLETED as c_int).then_some(figures))
}

/// `virDomainGetJobStats` with `flags`: the job's type and figures.
fn stats(dom: &Domain, flags: u32) -> Result<(c_int, JobFigures), Error> {
    let mut job_type: c_int = 0;
    let mut params: sys::virTypedParameterPtr = std::ptr::null_mut();
    let mut nparams: c_int = 0;
    // SAFETY: `dom` is a live domain handle; the out-pointers point to our locals; libvirt
    // allocates `params` (possibly NULL when nparams is 0) and we free it below.
    let ret = unsafe {
        sys::virDomainGetJobStats(
            dom.as_ptr(),
            &mut job_type,
            &mut params,
            &mut nparams,
            flags,
        )
    };
    if ret < 0 {
        return Err(Error::last_error());
    }
    let ull = |name: &CStr| -> Option<u64> {
        if params.is_null() {
            return None;
        }
        let mut v: std::os::raw::c_ulonglong = 0;
        // SAFETY: params/nparams come from libvirt above and are still allocated.
        let r = unsafe { sys::virTypedParamsGetULLong(params, nparams, name.as_ptr(), &mut v) };
        (r == 1).then_some(v)
    };
    let int = |name: &CStr| -> Option<i32> {
        if params.is_null() {
            return None;
        }
        let mut v: c_int = 0;
        // SAFETY: as above.
        let r = unsafe { sys::virTypedParamsGetInt(params, nparams, name.as_ptr(), &mut v) };
        (r == 1).then_some(v)
    };
    let figures = JobFigures {
        job_type,
        operation: int(sys::VIR_DOMAIN_JOB_OPERATION),
        data_processed: ull(sys::VIR_DOMAIN_JOB_DATA_PROCESSED).unwrap_or(0),
        data_remaining: ull(sys::VIR_DOMAIN_JOB_DATA_REMAINING).unwrap_or(0),
        data_total: ull(sys::VIR_DOMAIN_JOB_DATA_TOTAL).unwrap_or(0),
        dirty_rate_pages: ull(sys::VIR_DOMAIN_JOB_MEMORY_DIRTY_RATE),
        page_size: ull(sys::VIR_DOMAIN_JOB_MEMORY_PAGE_SIZE),
        mem_bps: ull(sys::VIR_DOMAIN_JOB_MEMORY_BPS),
        disk_bps: ull(sys::VIR_DOMAIN_JOB_DISK_BPS),
        iteration: ull(sys::VIR_DOMAIN_JOB_MEMORY_ITERATION),
        downtime_ms: ull(sys::VIR_DOMAIN_JOB_DOWNTIME),
    };
    if !params.is_null() {
        // SAFETY: allocated by libvirt in virDomainGetJobStats; freed exactly once.
        unsafe { sys::virTypedParamsFree(params, nparams) };
    }
    Ok((job_type, figures))
}

/// The host's memory figures (`virNodeGetMemoryStats`, all cells): each field's name (`total`,
/// `free`, `buffers`, `cached`) and its value in KiB.
pub fn node_memory_stats(conn: &Connect) -> Result<Vec<(String, u64)>, Error> {
    let cells = sys::VIR_NODE_MEMORY_STATS_ALL_CELLS;
    let mut n: c_int = 0;
    // SAFETY: live connection; a NULL params array with nparams 0 asks only for the count.
    let ret = unsafe {
        sys::virNodeGetMemoryStats(conn.as_ptr(), cells, std::ptr::null_mut(), &mut n, 0)
    };
    if ret < 0 {
        return Err(Error::last_error());
    }
    let mut params = vec![
        sys::_virNodeMemoryStats {
            field: [0; sys::VIR_NODE_MEMORY_STATS_FIELD_LENGTH as usize],
            value: 0,
        };
        usize::try_from(n).unwrap_or(0)
    ];
    // SAFETY: `params` holds `n` elements, which libvirt fills (it writes at most `n` and sets
    // `n` to how many it wrote); each `field` is a NUL-terminated string within its 80 bytes.
    let ret =
        unsafe { sys::virNodeGetMemoryStats(conn.as_ptr(), cells, params.as_mut_ptr(), &mut n, 0) };
    if ret < 0 {
        return Err(Error::last_error());
    }
    params.truncate(usize::try_from(n).unwrap_or(0));
    Ok(params
        .iter()
        .map(|p| {
            // SAFETY: see above: NUL-terminated within the array.
            let name = unsafe { CStr::from_ptr(p.field.as_ptr()) };
            (name.to_string_lossy().into_owned(), p.value)
        })
        .collect())
}

/// `virDomainDirtyRateStatus`: the measurement finished and its figure is there.
const DIRTY_RATE_MEASURED: i32 = sys::VIR_DOMAIN_DIRTYRATE_MEASURED as i32;

/// The domain's last measured memory dirty rate, in bytes/s (libvirt's `dirtyrate.*` domain
/// statistics, `virDomainListGetStats` with `VIR_DOMAIN_STATS_DIRTYRATE`): `None` when no
/// measurement has finished (`dirtyrate.calc_status` other than 2, "measured"), the host has no
/// such statistics, or the domain's job is busy (asked with
/// `VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT`: libvirt leaves out what would wait for the
/// domain's job, where a query would otherwise wait up to 30 s).
pub fn dirty_rate(dom: &Domain) -> Result<Option<u64>, Error> {
    // SAFETY: the handle stays owned by `dom`, alive for this call.
    let mut doms = [unsafe { dom.as_ptr() }, std::ptr::null_mut()];
    let mut records: *mut sys::virDomainStatsRecordPtr = std::ptr::null_mut();
    // SAFETY: `doms` is a NULL-terminated array holding one live domain handle; libvirt
    // allocates `records` (a NULL-terminated array of records), freed below.
    let n = unsafe {
        sys::virDomainListGetStats(
            doms.as_mut_ptr(),
            sys::VIR_DOMAIN_STATS_DIRTYRATE,
            &mut records,
            sys::VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT,
        )
    };
    if n < 0 {
        return Err(Error::last_error());
    }
    let mut figures = (None, None);
    if n > 0 && !records.is_null() {
        // SAFETY: `records` holds `n` (here 1) valid record pointers; each record's params
        // and nparams were filled by libvirt and stay allocated until the list is freed.
        let (params, nparams) = unsafe {
            let rec = *records;
            ((*rec).params, (*rec).nparams)
        };
        if !params.is_null() {
            let mut status: c_int = 0;
            let mut mib: c_longlong = 0;
            // SAFETY: params/nparams come from libvirt above and are still allocated.
            let got_status = unsafe {
                sys::virTypedParamsGetInt(
                    params,
                    nparams,
                    sys::VIR_DOMAIN_STATS_DIRTYRATE_CALC_STATUS.as_ptr(),
                    &mut status,
                )
            };
            // SAFETY: as above.
            let got_rate = unsafe {
                sys::virTypedParamsGetLLong(
                    params,
                    nparams,
                    sys::VIR_DOMAIN_STATS_DIRTYRATE_MEGABYTES_PER_SECOND.as_ptr(),
                    &mut mib,
                )
            };
            figures = (
                (got_status == 1).then_some(status),
                (got_rate == 1).then_some(mib),
            );
        }
    }
    if !records.is_null() {
        // SAFETY: allocated by libvirt in virDomainListGetStats; freed exactly once.
        unsafe { sys::virDomainStatsRecordListFree(records) };
    }
    Ok(dirty_rate_of(figures.0, figures.1))
}

/// The dirty rate in bytes/s that libvirt's `dirtyrate.calc_status` and
/// `dirtyrate.megabytes_per_second` figures say: the figure only once measured (status 2). Its
/// unit is QEMU's `dirty-rate` of `query-dirty-rate`, MB/s counted as 2^20 bytes (QEMU's
/// migration/dirtyrate.c divides the dirtied bytes by `1 << 20`).
pub fn dirty_rate_of(status: Option<i32>, mib_per_s: Option<i64>) -> Option<u64> {
    match (status, mib_per_s) {
        (Some(DIRTY_RATE_MEASURED), Some(mib)) => u64::try_from(mib)
            .ok()
            .map(|m| m.saturating_mul(1024 * 1024)),
        _ => None,
    }
}

/// Starts a measurement of the domain's memory dirty rate over `seconds`
/// (`virDomainStartDirtyRateCalc`, QEMU's `calc-dirty-rate` in its default page-sampling mode:
/// it hashes 512 sampled pages per GiB at the start and at the end). It returns at once; the
/// figure is read later with [`dirty_rate`]. Refused while one is already measuring (QEMU: "the
/// dirty rate is already being measured") and for a domain that is not running.
pub fn start_dirty_rate_calc(dom: &Domain, seconds: i32) -> Result<(), Error> {
    // SAFETY: live domain handle.
    let ret = unsafe {
        sys::virDomainStartDirtyRateCalc(
            dom.as_ptr(),
            seconds,
            sys::VIR_DOMAIN_DIRTYRATE_MODE_PAGE_SAMPLING,
        )
    };
    if ret < 0 {
        Err(Error::last_error())
    } else {
        Ok(())
    }
}

/// Aborts the domain's current job (`virDomainAbortJob`).
pub fn abort_job(dom: &Domain) -> Result<(), Error> {
    // SAFETY: live domain handle.
    let ret = unsafe { sys::virDomainAbortJob(dom.as_ptr()) };
    if ret < 0 {
        Err(Error::last_error())
    } else {
        Ok(())
    }
}

/// The type of the block job on disk `target` (`vda`...), `None` when there is none.
/// Types: 1 pull, 2 copy, 3 commit, 4 active commit, 5 backup.
pub fn block_job_type(dom: &Domain, target: &str) -> Result<Option<i32>, Error> {
    let disk = std::ffi::CString::new(target)?;
    let mut info = sys::virDomainBlockJobInfo {
        type_: 0,
        bandwidth: 0,
        cur: 0,
        end: 0,
    };
    // SAFETY: live domain handle, NUL-terminated disk name, `info` is ours.
    let ret = unsafe { sys::virDomainGetBlockJobInfo(dom.as_ptr(), disk.as_ptr(), &mut info, 0) };
    match ret {
        r if r < 0 => Err(Error::last_error()),
        0 => Ok(None),
        _ => Ok(Some(info.type_)),
    }
}

/// Whether a backup job (push or pull) runs: `virDomainBackupGetXMLDesc` succeeds only then.
pub fn backup_running(dom: &Domain) -> bool {
    // SAFETY: live domain handle; the returned string is ours to free.
    let ptr = unsafe { sys::virDomainBackupGetXMLDesc(dom.as_ptr(), 0) };
    if ptr.is_null() {
        return false;
    }
    // SAFETY: libvirt allocated it with malloc; freed once.
    unsafe { libc_free(ptr.cast()) };
    true
}

unsafe extern "C" {
    #[link_name = "free"]
    fn libc_free(p: *mut c_void);
}

/// Switches a running migration of the domain to post-copy.
pub fn start_post_copy(dom: &Domain) -> Result<(), Error> {
    // SAFETY: live domain handle.
    let ret = unsafe { sys::virDomainMigrateStartPostCopy(dom.as_ptr(), 0) };
    if ret < 0 {
        Err(Error::last_error())
    } else {
        Ok(())
    }
}

/// The allowed downtime of the domain's migration, ms.
pub fn max_downtime(dom: &Domain) -> Result<u64, Error> {
    let mut v: std::os::raw::c_ulonglong = 0;
    // SAFETY: live domain handle; `v` is ours.
    let ret = unsafe { sys::virDomainMigrateGetMaxDowntime(dom.as_ptr(), &mut v, 0) };
    if ret < 0 {
        Err(Error::last_error())
    } else {
        Ok(v)
    }
}

struct Pipe<'a> {
    dst: &'a Stream,
    cancel: &'a AtomicBool,
    bytes: &'a AtomicU64,
    /// The source file's size: a stream that claims more is broken, and is stopped rather than
    /// allowed to fill the destination's disk.
    limit: u64,
}

impl Pipe<'_> {
    fn over_limit(&self, more: u64) -> bool {
        self.bytes.load(Ordering::Relaxed).saturating_add(more) > self.limit
    }
}

unsafe extern "C" fn sink(
    _st: sys::virStreamPtr,
    data: *const c_char,
    nbytes: usize,
    opaque: *mut c_void,
) -> c_int {
    // SAFETY: `opaque` is the `Pipe` living on copy_volume_sparse's stack for the whole call.
    let pipe = unsafe { &*(opaque as *const Pipe<'_>) };
    if pipe.cancel.load(Ordering::Relaxed) || pipe.over_limit(nbytes as u64) {
        return -1;
    }
    // SAFETY: libvirt hands us `nbytes` readable bytes at `data`.
    let buf = unsafe { std::slice::from_raw_parts(data.cast::<u8>(), nbytes) };
    let mut off = 0;
    while off < buf.len() {
        match pipe.dst.send(&buf[off..]) {
            Ok(n) if n > 0 => off += n as usize,
            _ => return -1,
        }
    }
    pipe.bytes.fetch_add(nbytes as u64, Ordering::Relaxed);
    // A sink returns how many bytes it consumed (returning 0 makes libvirt hand the same bytes
    // again, forever).
    nbytes as c_int
}

unsafe extern "C" fn hole(
    _st: sys::virStreamPtr,
    length: c_longlong,
    opaque: *mut c_void,
) -> c_int {
    // SAFETY: as in `sink`.
    let pipe = unsafe { &*(opaque as *const Pipe<'_>) };
    if pipe.cancel.load(Ordering::Relaxed) || length < 0 || pipe.over_limit(length as u64) {
        return -1;
    }
    // SAFETY: the destination stream is live; a hole is sent as its length.
    let r = unsafe { sys::virStreamSendHole(pipe.dst.as_ptr(), length, 0) };
    if r < 0 {
        return -1;
    }
    pipe.bytes.fetch_add(length as u64, Ordering::Relaxed);
    0
}

/// Copies the whole file behind `src` (on `src_conn`) into `dst` (on `dst_conn`) through
/// libvirt's sparse volume streams: holes travel as lengths, not zeros. `bytes` counts what
/// was copied (data and holes) and must not pass `limit` (the source file's size: the copy
/// stops with an error rather than write more); setting `cancel` stops the copy with an error.
pub fn copy_volume_sparse(
    src_conn: &Connect,
    src: &StorageVol,
    limit: u64,
    dst_conn: &Connect,
    dst: &StorageVol,
    cancel: &AtomicBool,
    bytes: &AtomicU64,
) -> Result<(), Error> {
    let down = Stream::new(src_conn, 0)?;
    let up = Stream::new(dst_conn, 0)?;
    src.download(&down, 0, 0, sys::VIR_STORAGE_VOL_DOWNLOAD_SPARSE_STREAM)?;
    dst.upload(&up, 0, 0, sys::VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM)?;
    let pipe = Pipe {
        dst: &up,
        cancel,
        bytes,
        limit: bytes.load(Ordering::Relaxed).saturating_add(limit),
    };
    // SAFETY: `down` is a live stream set up for a sparse download; the callbacks only touch
    // `pipe`, which outlives this call.
    let ret = unsafe {
        sys::virStreamSparseRecvAll(
            down.as_ptr(),
            Some(sink),
            Some(hole),
            (&pipe as *const Pipe<'_>).cast_mut().cast(),
        )
    };
    if ret < 0 {
        let err = Error::last_error();
        let _ = down.abort();
        let _ = up.abort();
        return Err(err);
    }
    down.finish()?;
    up.finish()
}

/// The domain's state and reason as raw numbers (`virDomainGetState`). The crate's
/// `Domain::state()` ignores a failure of the call and reports garbage instead.
pub fn state(dom: &Domain) -> Result<(i32, i32), Error> {
    let mut state: c_int = -1;
    let mut reason: c_int = -1;
    // SAFETY: live domain handle; out-pointers are our locals.
    let ret = unsafe { sys::virDomainGetState(dom.as_ptr(), &mut state, &mut reason, 0) };
    if ret < 0 {
        Err(Error::last_error())
    } else {
        Ok((state, reason))
    }
}

/// How many snapshots libvirt keeps metadata of for the domain (`virDomainSnapshotNum`, not
/// wrapped by the crate; `list_all_snapshots` would build handles we do not need).
pub fn snapshot_count(dom: &Domain) -> Result<u32, Error> {
    // SAFETY: live domain handle.
    let ret = unsafe { sys::virDomainSnapshotNum(dom.as_ptr(), 0) };
    if ret < 0 {
        Err(Error::last_error())
    } else {
        Ok(ret as u32)
    }
}

/// How many checkpoints (incremental-backup metadata) the domain has
/// (`virDomainListAllCheckpoints` with a NULL list returns only the count; not wrapped).
pub fn checkpoint_count(dom: &Domain) -> Result<u32, Error> {
    // SAFETY: live domain handle; a NULL list asks for the count only (libvirt docs of
    // virDomainListAllCheckpoints: "if checkpoints is NULL, only the count is returned").
    let ret = unsafe { sys::virDomainListAllCheckpoints(dom.as_ptr(), std::ptr::null_mut(), 0) };
    if ret < 0 {
        Err(Error::last_error())
    } else {
        Ok(ret as u32)
    }
}

/// What `virConnectCompareHypervisorCPU` says of a CPU definition on this host's hypervisor
/// (for the given emulator, arch, machine type and virt type; `None` lets libvirt choose):
/// `VIR_CPU_COMPARE_INCOMPATIBLE` (0), `IDENTICAL` (1) or `SUPERSET` (2). Not wrapped by the
/// crate (it has only the host-CPU comparison, `virConnectCompareCPU`).
pub fn compare_hypervisor_cpu(
    conn: &Connect,
    emulator: Option<&str>,
    arch: Option<&str>,
    machine: Option<&str>,
    virttype: Option<&str>,
    cpu_xml: &str,
) -> Result<i32, Error> {
    use std::ffi::CString;
    let opt = |s: Option<&str>| s.map(CString::new).transpose();
    let (emulator, arch, machine, virttype) =
        (opt(emulator)?, opt(arch)?, opt(machine)?, opt(virttype)?);
    let ptr = |c: &Option<CString>| c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
    let xml = CString::new(cpu_xml)?;
    // SAFETY: live connection handle; every string is NUL-terminated and outlives the call,
    // or NULL where libvirt accepts NULL (all but the XML).
    let ret = unsafe {
        sys::virConnectCompareHypervisorCPU(
            conn.as_ptr(),
            ptr(&emulator),
            ptr(&arch),
            ptr(&machine),
            ptr(&virttype),
            xml.as_ptr(),
            0,
        )
    };
    if ret < 0 {
        Err(Error::last_error())
    } else {
        Ok(ret)
    }
}

#[cfg(test)]
mod tests {
    use super::dirty_rate_of;

    #[test]
    fn a_dirty_rate_is_reported_once_measured_in_bytes_per_second() {
        // libvirt's virDomainDirtyRateStatus: 0 unstarted, 1 measuring, 2 measured.
        assert_eq!(dirty_rate_of(Some(2), Some(3)), Some(3 * 1024 * 1024));
        assert_eq!(dirty_rate_of(Some(2), Some(0)), Some(0));
        assert_eq!(dirty_rate_of(Some(1), Some(3)), None, "still measuring");
        assert_eq!(dirty_rate_of(Some(0), None), None, "never measured");
        assert_eq!(dirty_rate_of(None, Some(3)), None, "no status: not trusted");
        assert_eq!(dirty_rate_of(Some(2), None), None);
        assert_eq!(dirty_rate_of(Some(2), Some(-1)), None, "a negative figure");
        assert_eq!(dirty_rate_of(Some(2), Some(i64::MAX)), Some(u64::MAX));
    }
}
