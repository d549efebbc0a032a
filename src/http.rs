//! HTTP sniffing: just enough to name a health check — the request line, the status code and the
//! User-Agent — from the first bytes a connection carried. Pure functions over byte slices.

/// `GET /health HTTP/1.1` → (`GET`, `/health`). `None` when the bytes are not an HTTP request line.
pub(crate) fn request_line(b: &[u8]) -> Option<(&str, &str)> {
    let sp = b.iter().position(|&c| c == b' ')?;
    let method = &b[..sp];
    if method.is_empty() || method.len() > 12 || !method.iter().all(|c| c.is_ascii_uppercase()) {
        return None;
    }
    let rest = &b[sp + 1..];
    let end = rest.iter().position(|&c| c == b' ' || c == b'\r' || c == b'\n').unwrap_or(rest.len());
    let path = &rest[..end];
    if path.is_empty() || !(path[0] == b'/' || path[0] == b'*' || path.starts_with(b"http")) {
        return None;
    }
    // When the line was captured whole, it must end in an HTTP version.
    let tail = &rest[end..];
    if tail.first() == Some(&b' ') && !tail[1..].starts_with(b"HTTP/") && tail.len() > 6 {
        return None;
    }
    Some((std::str::from_utf8(method).ok()?, std::str::from_utf8(path).ok()?))
}

/// `HTTP/1.1 200 OK` → 200.
pub(crate) fn status_code(b: &[u8]) -> Option<u16> {
    let rest = b.strip_prefix(b"HTTP/")?;
    let sp = rest.iter().position(|&c| c == b' ')?;
    let code = rest.get(sp + 1..sp + 4)?;
    if !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(code).ok()?.parse().ok()
}

/// The value of the User-Agent header, if the captured bytes contain it.
pub(crate) fn user_agent(b: &[u8]) -> Option<&[u8]> {
    const NAME: &[u8] = b"\nuser-agent:";
    let pos = b.windows(NAME.len()).position(|w| w.eq_ignore_ascii_case(NAME))?;
    let v = &b[pos + NAME.len()..];
    let v = &v[v.iter().position(|&c| c != b' ').unwrap_or(v.len())..];
    let end = v.iter().position(|&c| c == b'\r' || c == b'\n').unwrap_or(v.len());
    Some(&v[..end])
}

/// User-Agents of health checkers and uptime monitors (matched anywhere in the header, ignoring
/// case). Keep sorted; each entry names what sends it.
pub(crate) const PROBE_AGENTS: [&str; 24] = [
    "alwayson",                    // Azure Front Door / Traffic Manager probes
    "amazon-route53-health-check", // Route 53
    "better uptime",               // Better Stack
    "blackbox exporter",           // Prometheus blackbox exporter (http_2xx)
    "check_http",                  // monitoring-plugins / nagios-plugins
    "cloudflare-traffic-manager",  // Cloudflare load balancing monitors
    "consul health check",         // Consul
    "datadog",                     // Datadog agent and synthetics
    "elb-healthchecker",           // AWS ELB / ALB / NLB
    "envoy/hc",                    // Envoy active health checks
    "googlehc",                    // Google Cloud load balancers
    "haproxy",                     // HAProxy checks with a configured agent
    "health check",                // generic ("Health Check", "Azure Health Check")
    "healthcheck",                 // generic
    "kube-probe",                  // kubelet httpGet probes
    "monitoring-plugins",          // check_http's product token
    "nagios",                      // Nagios plugins
    "newrelicpinger",              // New Relic synthetics (legacy)
    "pingdom",                     // Pingdom
    "site24x7",                    // Site24x7
    "statuscake",                  // StatusCake
    "uptime-kuma",                 // Uptime Kuma
    "uptimerobot",                 // UptimeRobot
    "zabbix",                      // Zabbix web scenarios
];

/// Server software a response's `Server:` header can name (lower case, matched at the start of the
/// header's value). Index + 1 is what [`server_token`] returns.
pub(crate) const SERVER_TOKENS: [&str; 22] = [
    "apache",
    "bandit",
    "caddy",
    "cowboy",
    "elli",
    "envoy",
    "gunicorn",
    "hypercorn",
    "jetty",
    "kestrel",
    "lighttpd",
    "microsoft-iis",
    "mochiweb",
    "nginx",
    "openresty",
    "simplehttp",
    "tomcat",
    "uvicorn",
    "varnish",
    "waitress",
    "werkzeug",
    "yaws",
];

/// Servers that run on the Erlang VM, where Thousand Island's reset bug may apply.
pub(crate) fn is_erlang_server(token: &str) -> bool {
    matches!(token, "bandit" | "cowboy" | "elli" | "mochiweb" | "yaws")
}

/// The server software a response names in its `Server:` header: index + 1 into
/// [`SERVER_TOKENS`], or 0 when the bytes name none of them.
pub(crate) fn server_token(b: &[u8]) -> u8 {
    const NAME: &[u8] = b"\nserver:";
    let Some(pos) = b.windows(NAME.len()).position(|w| w.eq_ignore_ascii_case(NAME)) else { return 0 };
    let v = &b[pos + NAME.len()..];
    let v = &v[v.iter().position(|&c| c != b' ').unwrap_or(v.len())..];
    SERVER_TOKENS
        .iter()
        .position(|t| v.len() >= t.len() && v[..t.len()].eq_ignore_ascii_case(t.as_bytes()))
        .map_or(0, |i| i as u8 + 1)
}

/// A User-Agent value that names none of [`PROBE_AGENTS`].
pub(crate) const AGENT_UNLISTED: u8 = u8::MAX;
const _: () = assert!(PROBE_AGENTS.len() < AGENT_UNLISTED as usize);

/// Which of [`PROBE_AGENTS`] a User-Agent value contains: index + 1 of the first, or
/// [`AGENT_UNLISTED`].
pub(crate) fn agent_name(ua: &[u8]) -> u8 {
    PROBE_AGENTS
        .iter()
        .position(|p| {
            let p = p.as_bytes();
            ua.len() >= p.len() && ua.windows(p.len()).any(|w| w.eq_ignore_ascii_case(p))
        })
        .map_or(AGENT_UNLISTED, |i| i as u8 + 1)
}

/// What a request's User-Agent header names: 0 when the bytes hold no User-Agent, else
/// [`agent_name`] of its value.
pub(crate) fn agent_token(req: &[u8]) -> u8 {
    user_agent(req).map_or(0, agent_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_request_lines() {
        assert_eq!(request_line(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"), Some(("GET", "/health")));
        assert_eq!(request_line(b"OPTIONS / HTTP/1.0\r\n\r\n"), Some(("OPTIONS", "/")));
        assert_eq!(request_line(b"GET /very/long/pa"), Some(("GET", "/very/long/pa")));
        assert_eq!(request_line(b"PROXY TCP4 127.0.0.1 127.0.0.1 1 2\r\n"), None);
        assert_eq!(request_line(b"\x16\x03\x01\x02\x00"), None);
        assert_eq!(request_line(b"get / HTTP/1.1"), None);
    }

    #[test]
    fn parses_status_and_agent() {
        assert_eq!(status_code(b"HTTP/1.1 503 Service Unavailable\r\n"), Some(503));
        assert_eq!(status_code(b"HTTP/1.0 20"), None);
        let req = b"GET /healthz HTTP/1.1\r\nHost: 10.0.0.1:8080\r\nUser-Agent: kube-probe/1.29\r\nAccept: */*\r\n";
        assert_eq!(user_agent(req), Some(&b"kube-probe/1.29"[..]));
        assert_eq!(PROBE_AGENTS[usize::from(agent_token(req)) - 1], "kube-probe");
        assert_eq!(user_agent(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
        assert_eq!(agent_token(b"GET / HTTP/1.1\r\nHost: x\r\n"), 0, "no User-Agent");
        assert_eq!(agent_token(b"GET / HTTP/1.1\r\nUser-Agent: Mozilla/5.0\r\n"), AGENT_UNLISTED);
        for ua in [
            &b"Blackbox Exporter/0.23.0"[..],
            b"check_http/v2.3.3 (monitoring-plugins 2.3.3)",
            b"Uptime-Kuma/1.23.11",
            b"Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)",
            b"Pingdom.com_bot_version_1.4_(http://www.pingdom.com/)",
            b"Datadog Agent/7.50.0",
            b"Site24x7",
            b"ELB-HealthChecker/2.0",
            b"GoogleHC/1.0",
            b"Consul Health Check",
        ] {
            assert_ne!(agent_name(ua), AGENT_UNLISTED, "{}", String::from_utf8_lossy(ua));
        }
        for ua in [&b"curl/8.5.0"[..], b"Go-http-client/1.1", b"python-requests/2.31", b"Wget/1.21"] {
            assert_eq!(agent_name(ua), AGENT_UNLISTED, "{}", String::from_utf8_lossy(ua));
        }
        assert_eq!(server_token(b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\n"), 14);
        assert_eq!(SERVER_TOKENS[server_token(b"HTTP/1.0 200 OK\r\nserver: Cowboy\r\n") as usize - 1], "cowboy");
        assert_eq!(server_token(b"HTTP/1.1 200 OK\r\nServer: SimpleHTTP/0.6 Python/3.11.2\r\n"), 16);
        assert_eq!(server_token(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"), 0);
        assert_eq!(server_token(b"HTTP/1.1 200 OK\r\nServer: MyOwn\r\n"), 0);
        let mut sorted = SERVER_TOKENS;
        sorted.sort_unstable();
        assert_eq!(sorted, SERVER_TOKENS, "keep the list sorted");
        let mut sorted = PROBE_AGENTS;
        sorted.sort_unstable();
        assert_eq!(sorted, PROBE_AGENTS, "keep the list sorted");
        assert!(PROBE_AGENTS.iter().all(|p| p.bytes().all(|b| !b.is_ascii_uppercase())), "lower case");
    }
}
