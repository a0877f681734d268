"""The SSRF guard's rule: which network addresses a webhook may never reach (unless settings
allow private addresses, for development and tests). Checked on every delivery against the
addresses the endpoint's host resolves to, and on create/update for a URL that names an
address itself."""

from __future__ import annotations

import ipaddress

# Cloud metadata services that are not link-local (169.254.169.254 is, and is refused as such).
METADATA_ADDRESSES = frozenset(
    {
        ipaddress.ip_address("fd00:ec2::254"),  # AWS IMDS over IPv6
        ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
    }
)


def refused_address(address: str) -> str | None:
    """Why a webhook may not be delivered to this IP address, or None when it may be."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return f"{address[:60]!r} is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in METADATA_ADDRESSES:
        return f"{ip} is a cloud metadata address"
    if ip.is_loopback:
        return f"{ip} is a loopback address"
    if ip.is_link_local:
        return f"{ip} is a link-local address (cloud metadata lives there)"
    if ip.is_private or ip.is_reserved or ip.is_multicast or ip.is_unspecified:
        return f"{ip} is a private or reserved address"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.is_site_local:  # fec0::/10: deprecated, still routed inside some networks
            return f"{ip} is a site-local address"
        if ip.sixtofour is not None:  # 2002::/16 carries an IPv4 address
            embedded = refused_address(str(ip.sixtofour))
            if embedded is not None:
                return f"{ip} is a 6to4 address: {embedded}"
    if isinstance(ip, ipaddress.IPv4Address) and ip in ipaddress.ip_network("100.64.0.0/10"):
        return f"{ip} is a carrier-grade NAT address"
    return None
