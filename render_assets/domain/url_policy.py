"""Which image URLs the worker may fetch, judged without the network.

A URL passes when it is `https`, carries no credentials, and names a host (and port) on the
allowlist (`RENDER_SOURCE_IMAGE_HOSTS`). Once the fetcher has resolved the host, every address
must be on the public internet: private, loopback, link-local, multicast, reserved,
unspecified, carrier-grade NAT and cloud metadata addresses are refused, also when wrapped in
IPv6 (IPv4-mapped, NAT64). Refusals name the field and the problem, never the URL: its query
string may hold a signed token.

One origin is reserved and always accepted, whatever the allowlist: the bundled example images,
`https://examples.render-assets.invalid/<name>`, a file name of letters, digits, `-` and `_`
ending in `.png` or `.jpg`. `.invalid` never resolves (RFC 2606): the fetcher serves these from
the package and never looks the name up, so the demo works where no host is allowlisted.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from render_assets.domain.payload import RenderJob

HTTPS_PORT = 443
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# The payload fields that carry image URLs, in the order they are checked.
URL_FIELDS = ("sourceImageUrl", "maskImageUrl")
EXAMPLE_IMAGE_HOST = "examples.render-assets.invalid"
EXAMPLE_IMAGE_ORIGIN = f"https://{EXAMPLE_IMAGE_HOST}"
# A bare file name: no separator, no dot but the extension's, so it cannot name another folder.
EXAMPLE_IMAGE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}\.(?:png|jpg)")

# Refused by name before any lookup, whatever the allowlist says.
METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata.goog", "metadata"})
# Refused always, even by a fetcher given a narrower blocked list (tests that permit loopback).
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(address)
    for address in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack
        "169.254.170.2",  # AWS ECS task metadata
        "fd00:ec2::254",  # AWS over IPv6
        "100.100.100.200",  # Alibaba Cloud
    )
)
# Every IANA special-purpose block that is not globally reachable, and the transition ranges
# that embed an IPv4 address we could not vet (6to4, Teredo, local NAT64).
DEFAULT_BLOCKED_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(network)
    for network in (
        "0.0.0.0/8",  # "this network", unspecified
        "10.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, the metadata service
        "172.16.0.0/12",
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation
        "192.88.99.0/24",  # 6to4 relay anycast
        "192.168.0.0/16",
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation
        "203.0.113.0/24",  # documentation
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, broadcast
        "::/96",  # unspecified, loopback, IPv4-compatible (deprecated)
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",  # discard
        "2001::/23",  # IETF protocol assignments, Teredo
        "2001:db8::/32",  # documentation
        "2002::/16",  # 6to4
        "3fff::/20",  # documentation
        "5f00::/16",  # segment routing
        "fc00::/7",  # unique local (fd00:ec2::254 too)
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
# What may appear in a URL at all: printable ASCII without spaces or backslashes (a browser
# and a server can disagree about where such a URL's host ends).
_URL_CHARS = re.compile(r"^[\x21-\x5b\x5d-\x7e]+$")


class SourceImageRefused(ValueError):
    """An image URL, or what it served, breaks the policy: the customer's input, never retried."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True)
class HostRule:
    """One allowlist entry: an exact host, or (`*.example.com`) any name under a domain."""

    host: str
    port: int = HTTPS_PORT
    subdomains: bool = False

    def permits(self, host: str, port: int) -> bool:
        if port != self.port:
            return False
        return host.endswith("." + self.host) if self.subdomains else host == self.host


@dataclass(frozen=True)
class HostAllowlist:
    """The hosts image URLs may name. Empty: no URL is fetched (renders stay text-to-image)."""

    rules: tuple[HostRule, ...] = ()

    @classmethod
    def parse(cls, raw: str | None) -> HostAllowlist:
        """Comma-separated `host`, `host:port`, `*.domain`, `*.domain:port` or `[ipv6]:port`
        entries; without a port an entry permits 443 only."""
        rules = []
        for entry in (raw or "").split(","):
            entry = entry.strip().lower()
            if entry:
                rules.append(_rule(entry))
        return cls(tuple(rules))

    def __bool__(self) -> bool:
        return bool(self.rules)

    def permits(self, host: str, port: int) -> bool:
        return any(rule.permits(host, port) for rule in self.rules)


def _rule(entry: str) -> HostRule:
    subdomains = entry.startswith("*.")
    parsed = urlsplit("https://" + entry.removeprefix("*."))
    try:
        port = parsed.port or HTTPS_PORT
    except ValueError:
        raise ValueError(f"source image host entry {entry!r} has an invalid port") from None
    host = normal_host(parsed.hostname or "")
    bare = entry.removeprefix("*.")
    if host is None or "@" in entry or parsed.netloc != bare or (subdomains and _is_ip(host)):
        raise ValueError(f"source image host entry {entry!r} is not a host name, *.domain or [ipv6], with :port")
    return HostRule(host, port, subdomains)


@dataclass(frozen=True)
class ImageUrl:
    """A URL that passed the policy, in the parts a pinned request needs."""

    host: str  # lower case, no trailing dot; an IPv6 literal without brackets
    port: int
    target: str  # path and query, as sent in the request line

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == HTTPS_PORT else f"{host}:{self.port}"

    @property
    def is_ip_literal(self) -> bool:
        return _is_ip(self.host)

    @property
    def example_name(self) -> str | None:
        """The bundled example image the URL names (`check_url` vetted the name), else None."""
        return self.target.removeprefix("/") if self.host == EXAMPLE_IMAGE_HOST else None


def check_url(url: str, allowlist: HostAllowlist, field: str) -> ImageUrl:
    """The URL's parts when it may be fetched; SourceImageRefused naming `field` otherwise."""
    if not _URL_CHARS.match(url):
        raise SourceImageRefused(field, "is not a well-formed URL (spaces, control or non-ASCII characters)")
    parts = urlsplit(url)
    if parts.scheme.lower() != "https":
        raise SourceImageRefused(field, "must be an https URL")
    if parts.username is not None or parts.password is not None:
        raise SourceImageRefused(field, "must not carry credentials")
    try:
        port = parts.port or HTTPS_PORT
    except ValueError:
        raise SourceImageRefused(field, "has an invalid port") from None
    host = normal_host(parts.hostname or "")
    if host is None:
        raise SourceImageRefused(field, "has no valid host name")
    if host in METADATA_HOSTS:
        raise SourceImageRefused(field, "names a cloud metadata service")
    if host == EXAMPLE_IMAGE_HOST:
        return _example_url(parts.path, parts.query, parts.fragment, port, field)
    if not allowlist.permits(host, port):
        raise SourceImageRefused(field, "host is not on the source image allowlist (RENDER_SOURCE_IMAGE_HOSTS)")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return ImageUrl(host=host, port=port, target=target)


def _example_url(path: str, query: str, fragment: str, port: int, field: str) -> ImageUrl:
    """An example image URL: exactly the origin and a bare file name (no query, no fragment)."""
    if port != HTTPS_PORT or query or fragment or not EXAMPLE_IMAGE_NAME.fullmatch(path.removeprefix("/")):
        raise SourceImageRefused(
            field, f"names the example images' origin but no example image ({EXAMPLE_IMAGE_ORIGIN}/NAME.png or .jpg)"
        )
    return ImageUrl(host=EXAMPLE_IMAGE_HOST, port=HTTPS_PORT, target=path)


def is_example_url(url: str) -> bool:
    """Whether the URL names the example images' host (well formed or not: `check_url` judges that)."""
    try:
        return normal_host(urlsplit(url).hostname or "") == EXAMPLE_IMAGE_HOST
    except ValueError:  # an unbalanced IPv6 bracket
        return False


def fetches_photo(source_url: str, allowlist: HostAllowlist) -> bool:
    """Whether a job with this photo URL has its images fetched: always once a host is allowlisted
    (and refused when the policy says so), else only a bundled example (renders stay text-to-image)."""
    return bool(allowlist) or is_example_url(source_url)


def job_url_problems(job: RenderJob, allowlist: HostAllowlist) -> list[str]:
    """What is wrong with the job's image URLs ("field: problem"); empty when all may be fetched,
    or when none will be (`fetches_photo`)."""
    if not fetches_photo(job.sourceImageUrl, allowlist):
        return []
    problems = []
    for field in URL_FIELDS:
        url = getattr(job, field)
        if url is None:
            continue
        try:
            check_url(url, allowlist, field)
        except SourceImageRefused as refused:
            problems.append(str(refused))
    return problems


def normal_host(host: str) -> str | None:
    """The host as the policy compares it (lower case, no trailing dot), or None if malformed."""
    host = host.lower().removesuffix(".")
    if _is_ip(host):
        return str(ipaddress.ip_address(host))
    labels = host.split(".")
    if not host or len(host) > 253 or not all(_LABEL.match(label) for label in labels):
        return None
    return host


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def unwrapped(address: IPAddress) -> IPAddress:
    """The IPv4 address inside an IPv4-mapped or NAT64 IPv6 address; else the address itself."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def address_problem(address: IPAddress, blocked: Iterable[IPNetwork] = DEFAULT_BLOCKED_NETWORKS) -> str | None:
    """Why a resolved address must not be connected to, or None when it may be."""
    inner = unwrapped(address)
    if address in METADATA_ADDRESSES or inner in METADATA_ADDRESSES:
        return "resolves to a cloud metadata address"
    networks = tuple(blocked)
    for candidate in dict.fromkeys((address, inner)):
        if any(candidate.version == network.version and candidate in network for network in networks):
            return f"resolves to a non-public address ({_kind(candidate)})"
    return None


def vetted_addresses(
    resolved: Sequence[str], field: str, blocked: Iterable[IPNetwork] = DEFAULT_BLOCKED_NETWORKS
) -> list[IPAddress]:
    """The addresses to connect to (IPv4-mapped ones unwrapped), when every one is acceptable.

    One bad address refuses the lot: a name that resolves to a public and a private address is
    a rebinding attempt, or a misconfiguration we should not guess about."""
    if not resolved:
        raise SourceImageRefused(field, "host resolves to no address")
    networks = tuple(blocked)
    vetted: list[IPAddress] = []
    for text in resolved:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            raise SourceImageRefused(field, "host resolves to an unreadable address") from None
        problem = address_problem(address, networks)
        if problem is not None:
            raise SourceImageRefused(field, f"host {problem}")
        vetted.append(unwrapped(address))
    return list(dict.fromkeys(vetted))


def _kind(address: IPAddress) -> str:
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address.is_unspecified:
        return "unspecified"
    if address in _CGNAT:
        return "carrier-grade NAT"
    if address.is_private:
        return "private"
    return "reserved"
