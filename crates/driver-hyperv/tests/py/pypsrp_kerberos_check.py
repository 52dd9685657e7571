"""Independent Kerberos client check of the vmove Hyper-V fake: pypsrp + pyspnego over MIT GSSAPI
(python-gssapi, not our code and not sspi) authenticates with Kerberos to the fake, checks its
AP-REP (mutual authentication), and enumerates VMs with WinRM's Kerberos message encryption
(GSS wrap_iov, HTTP-SPNEGO-session-encrypted framing).

Usage: pypsrp_kerberos_check.py PORT SPN_HOST  (user@REALM / password from VMOVE_HYPERV_USER /
VMOVE_HYPERV_PASSWORD, realm and KDC from KRB5_CONFIG). Prints one JSON object.
"""
import json
import os
import sys
import xml.etree.ElementTree as ET

from pypsrp.wsman import WSMan

WMI = "http://schemas.microsoft.com/wbem/wsman/1/wmi/root/virtualization/v2/"
N = "http://schemas.xmlsoap.org/ws/2004/09/enumeration"
W = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"
WQL = "http://schemas.microsoft.com/wbem/wsman/1/WQL"


def main():
    port, spn_host = int(sys.argv[1]), sys.argv[2]
    wsman = WSMan("127.0.0.1", port=port, username=os.environ["VMOVE_HYPERV_USER"],
                  password=os.environ["VMOVE_HYPERV_PASSWORD"], ssl=False, auth="kerberos",
                  encryption="always", cert_validation=False,
                  negotiate_hostname_override=spn_host, negotiate_service="HTTP")
    enum = ET.Element("{%s}Enumerate" % N)
    ET.SubElement(enum, "{%s}OptimizeEnumeration" % W)
    ET.SubElement(enum, "{%s}MaxElements" % W).text = "32000"
    f = ET.SubElement(enum, "{%s}Filter" % W, Dialect=WQL)
    f.text = "SELECT * FROM Msvm_ComputerSystem WHERE Caption='Virtual Machine'"
    body = wsman.enumerate(WMI + "*", enum)
    names = sorted(e.text for e in body.iter() if e.tag.endswith("}ElementName"))
    proto = wsman.transport.encryption.protocol if wsman.transport.encryption else None
    print(json.dumps({"names": names, "encryption": proto}))


if __name__ == "__main__":
    main()
