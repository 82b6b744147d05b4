//! Limits at the public front doors: per client address, a rate (a token bucket: `per_second`
//! requests a second on average, bursts of twice that) and a number of requests in flight.
//!
//! Two doors have them: submission (JSON-RPC, `POST /api/v1/transactions`) on the main server,
//! and the file download server. A request over either limit is answered at once with `429 Too
//! Many Requests` and `Retry-After` (seconds until the bucket holds a token again; 1 for the
//! in-flight limit), as problem+json (`rate_limited`) on REST and the download server, and as a
//! JSON-RPC error object (code 4029, `data.code` `rate_limited`) on JSON-RPC; it is counted in
//! `gevulot_requests_refused_total{door}`. Nothing behind the door runs.
//!
//! The client is the TCP peer's address (an IPv6 client by its /64, which one host usually
//! holds whole); behind a reverse proxy every client is the proxy, so limit there instead
//! and set these to 0 (off). The table of clients is bounded: idle entries (nothing in flight, a
//! full bucket) are dropped when it fills, at most once a second; if it is still full, a new
//! client is refused as if over its limit, so a flood from many addresses cannot grow memory.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, ErrorCode};

/// Clients tracked per door at most.
const MAX_CLIENTS: usize = 65_536;

/// One door's limits per client address; 0 turns a limit off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DoorLimits {
    /// Requests a second on average (bursts of twice as many).
    pub per_second: u32,
    /// Requests in flight at once.
    pub concurrent: u32,
}

impl DoorLimits {
    pub const OFF: DoorLimits = DoorLimits {
        per_second: 0,
        concurrent: 0,
    };
}

/// How a refusal is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    Problem,
    JsonRpc,
}

#[derive(Debug)]
struct Client {
    tokens: f64,
    at: Instant,
    in_flight: u32,
}

#[derive(Debug)]
struct Clients {
    by_key: HashMap<IpAddr, Client>,
    pruned_at: Option<Instant>,
}

/// A door: its limits, its clients and what it refused.
#[derive(Debug)]
pub struct Door {
    name: &'static str,
    limits: DoorLimits,
    max_clients: usize,
    clients: Mutex<Clients>,
    refused: AtomicU64,
}

/// Why a request was refused, and when to come back.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Refused {
    pub retry_after: Duration,
    pub in_flight: bool,
}

/// A request let through; it counts as in flight until dropped.
#[derive(Debug)]
pub struct Pass {
    door: Arc<Door>,
    key: IpAddr,
}

impl Drop for Pass {
    fn drop(&mut self) {
        let mut clients = self.door.lock();
        if let Some(c) = clients.by_key.get_mut(&self.key) {
            c.in_flight = c.in_flight.saturating_sub(1);
        }
    }
}

/// The key a client is counted under: its IPv4 address, or its IPv6 /64.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl Door {
    pub fn new(name: &'static str, limits: DoorLimits) -> Arc<Self> {
        Self::with_capacity(name, limits, MAX_CLIENTS)
    }

    fn with_capacity(name: &'static str, limits: DoorLimits, max_clients: usize) -> Arc<Self> {
        Arc::new(Self {
            name,
            limits,
            max_clients,
            clients: Mutex::new(Clients {
                by_key: HashMap::new(),
                pruned_at: None,
            }),
            refused: AtomicU64::new(0),
        })
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Requests refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Clients> {
        self.clients.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn burst(&self) -> f64 {
        f64::from(self.limits.per_second) * 2.0
    }

    /// Lets a request from `ip` through at `now`, or says when to come back.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, now: Instant) -> Result<Pass, Refused> {
        let key = client_key(ip);
        let outcome = self.take(key, now);
        if outcome.is_err() {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        outcome.map(|()| Pass {
            door: self.clone(),
            key,
        })
    }

    fn take(&self, key: IpAddr, now: Instant) -> Result<(), Refused> {
        let DoorLimits {
            per_second,
            concurrent,
        } = self.limits;
        let burst = self.burst();
        let mut clients = self.lock();
        if !clients.by_key.contains_key(&key) && clients.by_key.len() >= self.max_clients {
            self.prune(&mut clients, now);
            if clients.by_key.len() >= self.max_clients {
                return Err(Refused {
                    retry_after: Duration::from_secs(1),
                    in_flight: false,
                });
            }
        }
        let c = clients.by_key.entry(key).or_insert(Client {
            tokens: burst,
            at: now,
            in_flight: 0,
        });
        if per_second > 0 {
            let elapsed = now.saturating_duration_since(c.at).as_secs_f64();
            c.tokens = (c.tokens + elapsed * f64::from(per_second)).min(burst);
            c.at = now;
        }
        if concurrent > 0 && c.in_flight >= concurrent {
            return Err(Refused {
                retry_after: Duration::from_secs(1),
                in_flight: true,
            });
        }
        if per_second > 0 {
            if c.tokens < 1.0 {
                let wait = (1.0 - c.tokens) / f64::from(per_second);
                return Err(Refused {
                    retry_after: Duration::from_secs_f64(wait),
                    in_flight: false,
                });
            }
            c.tokens -= 1.0;
        }
        c.in_flight += 1;
        Ok(())
    }

    /// Drops idle clients (nothing in flight, a bucket that has refilled), at most once a second.
    fn prune(&self, clients: &mut Clients, now: Instant) {
        if clients
            .pruned_at
            .is_some_and(|at| now.saturating_duration_since(at) < Duration::from_secs(1))
        {
            return;
        }
        clients.pruned_at = Some(now);
        let (per_second, burst) = (f64::from(self.limits.per_second), self.burst());
        clients.by_key.retain(|_, c| {
            let full = per_second == 0.0
                || c.tokens + now.saturating_duration_since(c.at).as_secs_f64() * per_second
                    >= burst;
            c.in_flight > 0 || !full
        });
    }

    /// The answer to a refused request.
    fn refusal(&self, refused: Refused, answer: Answer) -> Response {
        let secs = refused.retry_after.as_secs_f64().ceil().max(1.0) as u64;
        let detail = if refused.in_flight {
            format!(
                "too many requests in flight from your address ({} at once on the {} door); wait for some to finish, then retry",
                self.limits.concurrent, self.name
            )
        } else {
            format!(
                "too many requests from your address (over {} a second on the {} door); retry in {secs} s",
                self.limits.per_second, self.name
            )
        };
        let mut response = match answer {
            Answer::Problem => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::RateLimited,
                detail,
            )
            .into_response(),
            Answer::JsonRpc => {
                let body = serde_json::json!({
                    "jsonrpc": "2.0",
                    "id": null,
                    "error": api::rpc::error(429, ErrorCode::RateLimited, detail),
                });
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::CONTENT_TYPE, "application/json")],
                    body.to_string(),
                )
                    .into_response()
            }
        };
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        response
    }
}

/// Applies `door` to `req` (when its peer address is known) and answers a refusal with
/// `answer`. The pass is held until the response body has been sent, so a long download counts
/// as in flight for as long as it streams.
pub async fn guard(door: &Arc<Door>, answer: Answer, req: Request, next: Next) -> Response {
    if door.limits == DoorLimits::OFF {
        return next.run(req).await;
    }
    let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>().copied() else {
        return next.run(req).await;
    };
    let pass = match door.admit(peer.ip(), Instant::now()) {
        Ok(pass) => pass,
        Err(refused) => return door.refusal(refused, answer),
    };
    let response = next.run(req).await;
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        // A WebSocket: counted when it opens, not while it stays open.
        return response;
    }
    let (parts, body) = response.into_parts();
    let stream = futures::StreamExt::map(body.into_data_stream(), move |chunk| {
        let _held = &pass;
        chunk
    });
    Response::from_parts(parts, Body::from_stream(stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn a_burst_then_the_rate() {
        let door = Door::new(
            "test",
            DoorLimits {
                per_second: 10,
                concurrent: 0,
            },
        );
        let t0 = Instant::now();
        let passes: Vec<Pass> = (0..20)
            .map(|_| door.admit(ip("10.0.0.1"), t0).expect("within the burst"))
            .collect();
        let refused = door.admit(ip("10.0.0.1"), t0).expect_err("over the burst");
        assert!(!refused.in_flight);
        assert!(
            refused.retry_after > Duration::ZERO
                && refused.retry_after <= Duration::from_millis(100),
            "{refused:?}"
        );
        // Another address has its own bucket.
        assert!(door.admit(ip("10.0.0.2"), t0).is_ok());
        // A tenth of a second later, one more token.
        let t1 = t0 + Duration::from_millis(100);
        assert!(door.admit(ip("10.0.0.1"), t1).is_ok());
        assert!(door.admit(ip("10.0.0.1"), t1).is_err());
        assert_eq!(door.refused(), 2);
        drop(passes);
    }

    #[test]
    fn in_flight_until_the_pass_is_dropped() {
        let door = Door::new(
            "test",
            DoorLimits {
                per_second: 0,
                concurrent: 2,
            },
        );
        let t = Instant::now();
        let a = door.admit(ip("::1"), t).expect("first");
        let _b = door.admit(ip("::1"), t).expect("second");
        let refused = door.admit(ip("::1"), t).expect_err("third");
        assert!(refused.in_flight);
        drop(a);
        assert!(door.admit(ip("::1"), t).is_ok());
    }

    #[test]
    fn ipv6_clients_count_by_their_64() {
        assert_eq!(
            client_key(ip("2001:db8:1:2:aaaa::1")),
            client_key(ip("2001:db8:1:2:bbbb::9"))
        );
        assert_ne!(
            client_key(ip("2001:db8:1:2::1")),
            client_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(client_key(ip("::ffff:10.1.2.3")), ip("10.1.2.3"));
    }

    #[test]
    fn the_table_of_clients_is_bounded() {
        let door = Door::with_capacity(
            "test",
            DoorLimits {
                per_second: 1,
                concurrent: 0,
            },
            3,
        );
        let t0 = Instant::now();
        for n in 1..=3 {
            let _ = door
                .admit(ip(&format!("10.0.0.{n}")), t0)
                .expect("room for three");
        }
        // Full, and nobody idle yet (each spent a token): a fourth client is refused.
        assert!(door.admit(ip("10.0.0.4"), t0).is_err());
        // Two seconds on, the three have refilled and are dropped to make room.
        let t2 = t0 + Duration::from_secs(2);
        assert!(door.admit(ip("10.0.0.4"), t2).is_ok());
        assert_eq!(door.lock().by_key.len(), 1);
    }
}
