//! Which addresses a URL that an upstream supplied may lead to: public ones only.
//!
//! An upstream MCP server names the documents and endpoints Portcullis fetches (its 401
//! challenge, its protected resource metadata, the authorization server metadata that points
//! to). Fetched from inside the deployment, such a URL could reach what the internet cannot: the
//! cloud metadata service (credentials of the host), an admin port on loopback, a database on
//! the private network. So every address a name resolves to is checked against the ranges
//! below, and one bad address refuses the whole name: a resolver that answers with a public and
//! a private address must not get to choose which one we use.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A range of addresses no fetch named by an upstream may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AddressRange {
    /// `0.0.0.0/8`: on Linux, connecting to `0.0.0.0` reaches this host.
    ThisNetwork,
    /// `::`.
    Unspecified,
    /// `127.0.0.0/8`, `::1`: this host's own services; allowed only with `allow_loopback`.
    Loopback,
    /// `10.0.0.0/8`, `172.16.0.0/12`, `192.168.0.0/16` (RFC 1918).
    Private,
    /// `100.64.0.0/10` (RFC 6598): carrier-grade NAT, and some clouds' metadata services.
    SharedAddressSpace,
    /// `169.254.0.0/16`, `fe80::/10`: where cloud metadata services answer
    /// (`169.254.169.254`).
    LinkLocal,
    /// `fc00::/7` (RFC 4193), and the deprecated site-local `fec0::/10`.
    UniqueLocal,
    /// `224.0.0.0/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// Not routable on the internet: `192.0.0.0/24`, `198.18.0.0/15`, `240.0.0.0/4`, the
    /// documentation ranges, `100::/64`, `2001:db8::/32`.
    Reserved,
}

impl fmt::Display for AddressRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ThisNetwork => "an address of `0.0.0.0/8`, which reaches this host",
            Self::Unspecified => "the unspecified address",
            Self::Loopback => {
                "a loopback address, allowed only with `allow_loopback` (local development)"
            }
            Self::Private => "a private address (RFC 1918)",
            Self::SharedAddressSpace => "a shared address (`100.64.0.0/10`, carrier-grade NAT)",
            Self::LinkLocal => "a link-local address, where cloud metadata services answer",
            Self::UniqueLocal => "a unique-local (private) IPv6 address",
            Self::Multicast => "a multicast address",
            Self::Broadcast => "the broadcast address",
            Self::Reserved => "an address that is not routable on the internet",
        })
    }
}

/// Names that reach a cloud provider's metadata service, refused before they are resolved: on
/// the host they usually resolve to a link-local address, which would be refused too, but a
/// local resolver or `/etc/hosts` may map them anywhere.
const METADATA_HOSTNAMES: &[&str] = &[
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "metadata.azure.internal",
    "instance-data",
    "instance-data.ec2.internal",
    "metadata.tencentyun.com",
    "metadata.packet.net",
];

/// Whether `host` (a domain, already lowercased by the URL parser) names a metadata service.
pub(crate) fn is_metadata_hostname(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    METADATA_HOSTNAMES.contains(&host)
}

/// The forbidden range `address` is in, if any. IPv6 forms that carry an IPv4 address (mapped,
/// compatible, NAT64, 6to4) are judged by that address: `::ffff:169.254.169.254` reaches the
/// metadata service as surely as `169.254.169.254` does.
pub(crate) fn forbidden_range(address: IpAddr) -> Option<AddressRange> {
    match address {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(address: Ipv4Addr) -> Option<AddressRange> {
    let [a, b, c, _] = address.octets();
    let range = match (a, b, c) {
        (0, _, _) => AddressRange::ThisNetwork,
        (127, _, _) => AddressRange::Loopback,
        (10, _, _) | (172, 16..=31, _) | (192, 168, _) => AddressRange::Private,
        (100, 64..=127, _) => AddressRange::SharedAddressSpace,
        (169, 254, _) => AddressRange::LinkLocal,
        (224..=239, _, _) => AddressRange::Multicast,
        _ if address == Ipv4Addr::BROADCAST => AddressRange::Broadcast,
        (240..=255, _, _)
        | (192, 0, 0)
        | (192, 0, 2)
        | (198, 18..=19, _)
        | (198, 51, 100)
        | (203, 0, 113) => AddressRange::Reserved,
        _ => return None,
    };
    Some(range)
}

fn forbidden_v6(address: Ipv6Addr) -> Option<AddressRange> {
    if address.is_unspecified() {
        return Some(AddressRange::Unspecified);
    }
    if address.is_loopback() {
        return Some(AddressRange::Loopback);
    }
    if let Some(embedded) = embedded_v4(address) {
        return forbidden_v4(embedded);
    }
    let segments = address.segments();
    let [first, second, ..] = segments;
    let range = match first {
        0xfe80..=0xfebf => AddressRange::LinkLocal,
        0xfec0..=0xfeff | 0xfc00..=0xfdff => AddressRange::UniqueLocal,
        0xff00..=0xffff => AddressRange::Multicast,
        0x2001 if second == 0x0db8 => AddressRange::Reserved,
        // 100::/64, discard-only.
        0x0100 if segments.get(1..4) == Some(&[0, 0, 0]) => AddressRange::Reserved,
        _ => return None,
    };
    Some(range)
}

/// The IPv4 address an IPv6 address stands for, in the forms that reach it.
fn embedded_v4(address: Ipv6Addr) -> Option<Ipv4Addr> {
    let segments = address.segments();
    let tail = |high: u16, low: u16| {
        let [a, b] = high.to_be_bytes();
        let [c, d] = low.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    match segments {
        // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible, deprecated).
        [0, 0, 0, 0, 0, 0xffff | 0, high, low] => Some(tail(high, low)),
        // 64:ff9b::a.b.c.d (NAT64, RFC 6052), which a NAT64 gateway forwards to a.b.c.d.
        [0x64, 0xff9b, 0, 0, 0, 0, high, low] => Some(tail(high, low)),
        // 2002:AABB:CCDD::/48 (6to4).
        [0x2002, high, low, ..] => Some(tail(high, low)),
        _ => None,
    }
}
