"""Independent client check of the vmove Hyper-V fake: pypsrp (not our code) enumerates with
WQL + Pull, invokes MigrateVirtualSystemToHost with a REF and an embedded CIM-XML parameter, and
Gets the job, and writes and reads back a registry value through StdRegProv's static methods
(as the driver's attempt records do), over HTTP with NTLM message encryption.

Usage: pypsrp_check.py PORT VM_GUID DEST_NAME SOURCE_NAME  (user/password from
VMOVE_HYPERV_USER / VMOVE_HYPERV_PASSWORD). Prints one JSON object.
"""
import json
import os
import sys
import xml.etree.ElementTree as ET

from pypsrp.wsman import WSMan, SelectorSet, NAMESPACES

WMI = "http://schemas.microsoft.com/wbem/wsman/1/wmi/root/virtualization/v2/"
N = "http://schemas.xmlsoap.org/ws/2004/09/enumeration"
W = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"
A = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
WQL = "http://schemas.microsoft.com/wbem/wsman/1/WQL"


def local(tag):
    return tag.rsplit("}", 1)[-1]


def items_of(body):
    out = []
    for item in body.iter("{%s}Item" % W):
        for obj in item:
            if local(obj.tag) == "EndpointReference":
                continue
            props = {}
            for p in obj:
                props.setdefault(local(p.tag), []).append(p.text)
            out.append(props)
    return out


def main():
    port, guid, dest, source = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    wsman = WSMan("127.0.0.1", port=port, username=os.environ["VMOVE_HYPERV_USER"],
                  password=os.environ["VMOVE_HYPERV_PASSWORD"], ssl=False, auth="ntlm",
                  encryption="always", cert_validation=False)
    result = {"vms": [], "pulls": 0}

    # Enumerate with a WQL filter on the wildcard URI, optimized, objects and EPRs.
    enum = ET.Element("{%s}Enumerate" % N)
    ET.SubElement(enum, "{%s}OptimizeEnumeration" % W)
    ET.SubElement(enum, "{%s}MaxElements" % W).text = "32000"
    f = ET.SubElement(enum, "{%s}Filter" % W, Dialect=WQL)
    f.text = "SELECT * FROM Msvm_ComputerSystem WHERE Caption='Virtual Machine'"
    ET.SubElement(enum, "{%s}EnumerationMode" % W).text = "EnumerateObjectAndEPR"
    body = wsman.enumerate(WMI + "*", enum)
    items = items_of(body)
    ctx = body.find(".//{%s}EnumerationContext" % N)
    end = body.find(".//{%s}EndOfSequence" % W) is not None
    while not end and ctx is not None:
        pull = ET.Element("{%s}Pull" % N)
        ET.SubElement(pull, "{%s}EnumerationContext" % N).text = ctx.text
        ET.SubElement(pull, "{%s}MaxElements" % N).text = "32000"
        body = wsman.pull(WMI + "*", pull)
        result["pulls"] += 1
        items += items_of(body)
        ctx = body.find(".//{%s}EnumerationContext" % N)
        end = body.find(".//{%s}EndOfSequence" % N) is not None
    result["vms"] = sorted(i["ElementName"][0] for i in items)
    result["op_status"] = {i["ElementName"][0]: i.get("OperationalStatus") for i in items}

    # Invoke MigrateVirtualSystemToHost with a REF and an embedded instance.
    svc_uri = WMI + "Msvm_VirtualSystemMigrationService"
    sel = SelectorSet()
    sel.add_option("CreationClassName", "Msvm_VirtualSystemMigrationService")
    sel.add_option("Name", "migrationwmi")
    sel.add_option("SystemCreationClassName", "Msvm_ComputerSystem")
    sel.add_option("SystemName", source)
    inp = ET.Element("{%s}MigrateVirtualSystemToHost_INPUT" % svc_uri)
    cs = ET.SubElement(inp, "{%s}ComputerSystem" % svc_uri)
    ET.SubElement(cs, "{%s}Address" % A).text = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"
    rp = ET.SubElement(cs, "{%s}ReferenceParameters" % A)
    ET.SubElement(rp, "{%s}ResourceURI" % W).text = WMI + "Msvm_ComputerSystem"
    ss = ET.SubElement(rp, "{%s}SelectorSet" % W)
    ET.SubElement(ss, "{%s}Selector" % W, Name="CreationClassName").text = "Msvm_ComputerSystem"
    ET.SubElement(ss, "{%s}Selector" % W, Name="Name").text = guid
    ET.SubElement(inp, "{%s}DestinationHost" % svc_uri).text = dest
    ET.SubElement(inp, "{%s}MigrationSettingData" % svc_uri).text = (
        '<INSTANCE CLASSNAME="Msvm_VirtualSystemMigrationSettingData">'
        '<PROPERTY NAME="MigrationType" TYPE="uint16"><VALUE>32771</VALUE></PROPERTY>'
        '<PROPERTY NAME="TransportType" TYPE="uint16"><VALUE>5</VALUE></PROPERTY></INSTANCE>')
    resp = wsman.invoke(svc_uri + "/MigrateVirtualSystemToHost", svc_uri, inp, selector_set=sel)
    out = resp.find("s:Body", namespaces=NAMESPACES)[0]
    result["return_value"] = int(out.find("{%s}ReturnValue" % svc_uri).text)
    job_id = None
    for s in out.iter("{%s}Selector" % W):
        if s.get("Name") == "InstanceID":
            job_id = s.text
    result["job_id"] = job_id
    # The job's class is the one its reference names (an Msvm_MigrationJob).
    job_uri = None
    for r in out.iter("{%s}ResourceURI" % W):
        job_uri = r.text
    result["job_class"] = job_uri.rsplit("/", 1)[-1] if job_uri else None

    # Get the job through its reference: its resource URI and selector.
    jsel = SelectorSet()
    jsel.add_option("InstanceID", job_id)
    body = wsman.get(job_uri, selector_set=jsel)
    job = body[0]
    result["job_state"] = int(job.find("{%s}JobState" % job.tag.split("}")[0][1:]).text)

    # A fault comes back as a WSManFault pypsrp understands.
    try:
        bad = SelectorSet()
        bad.add_option("InstanceID", "no-such-job")
        wsman.get(job_uri, selector_set=bad)
        result["fault_code"] = None
    except Exception as e:  # pypsrp.exceptions.WSManFaultError
        result["fault_code"] = getattr(e, "code", None)

    # StdRegProv's static methods (no selector set), as the driver's attempt records use them:
    # arrays in as repeated elements, arrays out read back.
    reg = "http://schemas.microsoft.com/wbem/wsman/1/wmi/root/default/StdRegProv"
    key = "SOFTWARE\\vmove\\AttemptRecords\\" + guid

    def reg_call(method, **params):
        inp = ET.Element("{%s}%s_INPUT" % (reg, method))
        ET.SubElement(inp, "{%s}hDefKey" % reg).text = "2147483650"
        ET.SubElement(inp, "{%s}sSubKeyName" % reg).text = key
        for name, value in params.items():
            for item in value if isinstance(value, list) else [value]:
                ET.SubElement(inp, "{%s}%s" % (reg, name)).text = item
        resp = wsman.invoke(reg + "/" + method, reg, inp)
        out = resp.find("s:Body", namespaces=NAMESPACES)[0]
        got = {}
        for c in out:
            got.setdefault(local(c.tag), []).append(c.text)
        return got

    lines = ["vmove attempt record 1", "folder=E:\\Hyper-V\\py0"]
    result["registry"] = {
        "create": reg_call("CreateKey")["ReturnValue"][0],
        "set": reg_call("SetMultiStringValue", sValueName="run py attempt 1",
                        sValue=lines)["ReturnValue"][0],
        "names": reg_call("EnumValues").get("sNames"),
        "value": reg_call("GetMultiStringValue", sValueName="run py attempt 1").get("sValue"),
        "missing": reg_call("GetMultiStringValue", sValueName="nothing")["ReturnValue"][0],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
