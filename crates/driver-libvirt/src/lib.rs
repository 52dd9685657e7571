//! vmove-driver-libvirt
