//! Libvirt XML as libvirt writes it, for the tests of the readers (`xml.rs`) and the seeds of
//! the fuzzing (`fuzz.rs`): one copy of each.

/// A running domain as libvirt 9.0 writes it (live XML: `id`, a backing chain ending in
/// `<backingStore/>`, a mirror, a cdrom, a file serial/console log).
pub const RUNNING: &str = r#"<domain type='qemu' id='3'>
  <name>vm1</name>
  <uuid>11111111-2222-3333-4444-555555555555</uuid>
  <memory unit='KiB'>65536</memory>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/libvirt/images/vm1-0.qcow2' index='2'/>
      <backingStore type='file' index='3'>
        <format type='qcow2'/>
        <source file='/var/lib/libvirt/images/vm1-0-base.qcow2'/>
        <backingStore/>
      </backingStore>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='/data/it&apos;s.img'></source>
      <target dev='vdb' bus='virtio'/>
      <mirror type='file' job='copy'><source file='/x'/></mirror>
    </disk>
    <disk type='file' device='cdrom'><source file='/iso/a.iso'/><target dev='hdc'/><readonly/></disk>
    <serial type='file'><source path='/var/log/libvirt/qemu/vm1-serial0.log'/><target port='0'/></serial>
    <console type='file'><source path='/var/log/libvirt/qemu/vm1-serial0.log'/><target type='serial' port='0'/></console>
  </devices>
</domain>"#;

/// A storage volume with a backing file and its timestamps.
pub const VOLUME: &str = "<volume type='file'><name>t.qcow2</name><capacity unit='bytes'>67108864</capacity><allocation unit='KiB'>4356</allocation><target><path>/i/t.qcow2</path><format type='qcow2'/><timestamps><atime>1795735743.349969302</atime><mtime>1795735743.261969297</mtime><ctime>1795735743.261969298</ctime></timestamps></target><backingStore><path>/i/b.qcow2</path><format type='qcow2'/></backingStore></volume>";

/// A `dir` storage pool.
pub const POOL: &str = "<pool type='dir'><name>images</name><target><path>/var/lib/libvirt/images</path></target></pool>";

/// [`RUNNING`] with vmove's provenance record in its `<metadata>` and a log file on its serial
/// port.
pub fn running_with_provenance() -> String {
    RUNNING
        .replacen(
            "  <memory",
            &format!("  <metadata>\n    {RECORD}\n  </metadata>\n  <memory"),
            1,
        )
        .replacen(
            "<target port='0'/></serial>",
            "<target port='0'/><log file='/var/log/libvirt/qemu/vm1-log.log'/></serial>",
            1,
        )
}

/// The provenance record [`running_with_provenance`] carries.
const RECORD: &str = "<vmove:moved xmlns:vmove='https://vmove.invalid/libvirt/1' source-host='hostA' source-name='vm1' run='r1' attempt='2'><vmove:file path='/a/vm1-0.qcow2'/><vmove:log path='/var/log/libvirt/qemu/vm1.log'/><vmove:size path='/b/vm1-0.qcow2' bytes='67108864'/><vmove:source path='/a/vm1-0.qcow2' bytes='4521984' mtime='1795735743.261969297' ctime='1795735743.261969298'/></vmove:moved>";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::xml::parse_domain;

    #[test]
    fn the_sample_with_provenance_reads_its_record_and_its_serial_log() {
        let d = parse_domain(&running_with_provenance()).unwrap();
        let p = d.provenance.unwrap();
        assert_eq!(
            (p.source_host.as_str(), p.run_id.as_str(), p.attempt),
            ("hostA", "r1", 2)
        );
        assert!(
            d.log_files
                .contains(&"/var/log/libvirt/qemu/vm1-log.log".to_owned())
        );
        assert_eq!(parse_domain(RUNNING).unwrap().provenance, None);
    }
}
