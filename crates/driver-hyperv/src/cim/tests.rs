#![allow(clippy::unwrap_used)]
use super::*;

const VM_WIRE: &str = r#"<p:Msvm_ComputerSystem xmlns:p="http://schemas.microsoft.com/wbem/wsman/1/wmi/root/virtualization/v2/Msvm_ComputerSystem" xmlns:cim="http://schemas.dmtf.org/wbem/wscim/1/common" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="p:Msvm_ComputerSystem_Type">
      <p:Caption>Virtual Machine</p:Caption>
      <p:ElementName>web &amp; db</p:ElementName>
      <p:EnabledState>2</p:EnabledState>
      <p:InstallDate><cim:Datetime>20260101120000.000000+000</cim:Datetime></p:InstallDate>
      <p:Name>0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0</p:Name>
      <p:OperationalStatus>11</p:OperationalStatus>
      <p:OperationalStatus>32776</p:OperationalStatus>
      <p:OtherEnabledState xsi:nil="true"/>
      <p:StatusDescriptions>In service</p:StatusDescriptions>
    </p:Msvm_ComputerSystem>"#;

#[test]
fn parses_wsman_instance_with_arrays_nulls_and_datetimes() {
    let el = crate::xml::parse(VM_WIRE).unwrap();
    let vm = CimInstance::from_wsman(&el);
    assert_eq!(vm.class_name, "Msvm_ComputerSystem");
    assert_eq!(vm.get_str("ElementName").as_deref(), Some("web & db"));
    assert_eq!(vm.get_u32("EnabledState"), Some(2));
    assert_eq!(vm.get_array("OperationalStatus"), vec!["11", "32776"]);
    assert_eq!(vm.get_array("StatusDescriptions"), vec!["In service"]);
    assert_eq!(vm.get("OtherEnabledState"), Some(&CimValue::Null));
    assert_eq!(vm.get_str("OtherEnabledState"), None);
    assert_eq!(
        vm.get("InstallDate"),
        Some(&CimValue::DateTime("20260101120000.000000+000".into()))
    );
}

#[test]
fn wsman_writer_round_trips_through_the_parser() {
    let job = Epr::new(
        class_uri("root/virtualization/v2", "Msvm_ConcreteJob"),
        vec![("InstanceID".into(), "AB-1".into())],
    );
    let inst = CimInstance::new("Msvm_Thing")
        .with("Name", CimValue::String("a<b".into()))
        .with(
            "Counts",
            CimValue::Array(vec![CimValue::U16(1), CimValue::U16(2)]),
        )
        .with("Gone", CimValue::Null)
        .with(
            "When",
            CimValue::DateTime("20260101000000.000000+000".into()),
        )
        .with("Job", CimValue::Ref(job.clone()));
    let text = inst.to_wsman("root/virtualization/v2");
    let back = CimInstance::from_wsman(&crate::xml::parse(&text).unwrap());
    assert_eq!(back.get_str("Name").as_deref(), Some("a<b"));
    assert_eq!(back.get_array("Counts"), vec!["1", "2"]);
    assert_eq!(back.get("Gone"), Some(&CimValue::Null));
    assert_eq!(back.get_ref("Job"), Some(&job));
    assert_eq!(
        back.get("When"),
        Some(&CimValue::DateTime("20260101000000.000000+000".into()))
    );
}

#[test]
fn cim_xml_serializer_writes_types_and_arrays() {
    let msd = CimInstance::new("Msvm_VirtualSystemMigrationSettingData")
        .with("MigrationType", CimValue::Text("32771".into()))
        .with("TransportType", CimValue::U16(5))
        .with(
            "DestinationIPAddressList",
            CimValue::Array(vec![CimValue::String("10.0.0.2".into())]),
        )
        .with("RetainVhdCopiesOnSource", CimValue::Bool(false))
        .with("Caption", CimValue::Null);
    let xml = msd.to_cim_xml();
    assert_eq!(
        xml,
        "<INSTANCE CLASSNAME=\"Msvm_VirtualSystemMigrationSettingData\">\
         <PROPERTY NAME=\"MigrationType\" TYPE=\"uint16\"><VALUE>32771</VALUE></PROPERTY>\
         <PROPERTY NAME=\"TransportType\" TYPE=\"uint16\"><VALUE>5</VALUE></PROPERTY>\
         <PROPERTY.ARRAY NAME=\"DestinationIPAddressList\" TYPE=\"string\"><VALUE.ARRAY><VALUE>10.0.0.2</VALUE></VALUE.ARRAY></PROPERTY.ARRAY>\
         <PROPERTY NAME=\"RetainVhdCopiesOnSource\" TYPE=\"boolean\"><VALUE>false</VALUE></PROPERTY>\
         <PROPERTY NAME=\"Caption\" TYPE=\"string\"></PROPERTY>\
         </INSTANCE>"
    );
    let back = CimInstance::from_cim_xml(&xml).unwrap();
    assert_eq!(back.get("MigrationType"), Some(&CimValue::U16(32771)));
    assert_eq!(back.get("Caption"), Some(&CimValue::Null));
    assert_eq!(back.get_array("DestinationIPAddressList"), vec!["10.0.0.2"]);
}

#[test]
fn cim_xml_escapes_paths() {
    let s = CimInstance::new("Msvm_StorageAllocationSettingData").with(
        "HostResource",
        CimValue::Array(vec![CimValue::String("E:\\VMs\\a&b.vhdx".into())]),
    );
    let xml = s.to_cim_xml();
    assert!(xml.contains("<VALUE>E:\\VMs\\a&amp;b.vhdx</VALUE>"));
    assert_eq!(
        CimInstance::from_cim_xml(&xml)
            .unwrap()
            .get_array("HostResource"),
        vec!["E:\\VMs\\a&b.vhdx"]
    );
}

#[test]
fn datetimes_are_written_in_cim_native_form_whatever_form_they_were_read_in() {
    assert_eq!(
        datetime_to_cim("2026-01-02T03:04:05Z").as_deref(),
        Some("20260102030405.000000+000")
    );
    assert_eq!(
        datetime_to_cim("2026-01-02T03:04:05.25-05:30").as_deref(),
        Some("20260102030405.250000-330")
    );
    assert_eq!(
        datetime_to_cim("P0DT0H45M0S").as_deref(),
        Some("00000000004500.000000:000")
    );
    assert_eq!(
        datetime_to_cim("PT90S").as_deref(),
        Some("00000000000130.000000:000")
    );
    assert_eq!(
        datetime_to_cim("P2D").as_deref(),
        Some("00000002000000.000000:000")
    );
    assert_eq!(
        datetime_to_cim("20260101000000.000000+000").as_deref(),
        Some("20260101000000.000000+000")
    );
    for bad in [
        "",
        "yesterday",
        "2026-01-02",
        "P1Y",
        "PT1X",
        "2026-01-02T03:04:05+5",
        // Hostile: overflows u64 arithmetic (no panic), or more days than CIM holds.
        "P18446744073709551615D",
        "PT18446744073709551615H",
        "P100000000D",
        "2026-01-02T03:04:05.Z",
        "２０２６-01-02T03:04:05Z",
        "2026-01-02T03:04:05+é:0",
        "2026-01-02T03:04:05+0é00",
    ] {
        assert_eq!(datetime_to_cim(bad), None, "{bad}");
    }
    let v = CimInstance::new("Msvm_VirtualSystemSettingData")
        .with(
            "AutomaticStartupActionDelay",
            CimValue::DateTime("P0DT0H1M30S".into()),
        )
        .with("CreationTime", CimValue::Text("x".into()));
    let xml = v.to_cim_xml();
    assert!(
        xml.contains("<PROPERTY NAME=\"AutomaticStartupActionDelay\" TYPE=\"datetime\"><VALUE>00000000000130.000000:000</VALUE>"),
        "{xml}"
    );
    assert!(
        xml.contains("<PROPERTY NAME=\"CreationTime\" TYPE=\"datetime\">"),
        "{xml}"
    );
}

#[test]
fn type_hints_follow_the_class_reference() {
    // Bandwidth is uint16 (msvm-virtualsystemmigrationsettingdata.md), Weight uint32
    // (msvm-storageallocationsettingdata.md): both were uint64 before.
    assert_eq!(
        type_hint("Msvm_VirtualSystemMigrationSettingData", "Bandwidth"),
        Some("uint16")
    );
    assert_eq!(
        type_hint("Msvm_StorageAllocationSettingData", "Weight"),
        Some("uint32")
    );
    assert_eq!(
        type_hint("Msvm_StorageAllocationSettingData", "Limit"),
        Some("uint64")
    );
}

#[test]
fn intervals_go_on_the_wire_as_cim_interval() {
    let inst = CimInstance::new("Msvm_Thing")
        .with("Delay", CimValue::DateTime("PT30S".into()))
        .with("At", CimValue::DateTime("2026-01-01T00:00:00Z".into()));
    let text = inst.to_wsman("root/virtualization/v2");
    assert!(
        text.contains("<cim:Interval>PT30S</cim:Interval>"),
        "{text}"
    );
    assert!(
        text.contains("<cim:Datetime>2026-01-01T00:00:00Z</cim:Datetime>"),
        "{text}"
    );
    let back = CimInstance::from_wsman(&crate::xml::parse(&text).unwrap());
    assert_eq!(back.get("Delay"), Some(&CimValue::DateTime("PT30S".into())));
}

#[test]
fn object_path_quotes_and_escapes_keys() {
    let e = Epr::new(
        class_uri("root/cimv2", "Win32_Directory"),
        vec![
            ("Name".into(), "e:\\vms\\x".into()),
            ("__cimnamespace".into(), "root/cimv2".into()),
        ],
    );
    assert_eq!(e.object_path(), "Win32_Directory.Name=\"e:\\\\vms\\\\x\"");
}
