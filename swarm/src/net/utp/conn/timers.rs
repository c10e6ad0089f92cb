//! A connection's timers: the handshake's SYN retries, retransmission timeouts with
//! back-off (BEP 29 "timeouts"), the tail-loss probe, keepalives, the idle limit and the
//! linger after close.

use std::time::{Duration, Instant};

use super::*;

impl Connection {
    fn idle_limit(&self) -> Duration {
        if self.heard {
            self.cfg.idle_timeout
        } else {
            ACCEPT_SILENCE_TIMEOUT.min(self.cfg.idle_timeout)
        }
    }

    /// When [`Self::handle_timeout`] wants to run next.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::SynSent { deadline, .. } => Some(deadline),
            State::Closed => self.linger_until,
            State::Connected => {
                let keepalive = self.last_send + KEEPALIVE_INTERVAL;
                let idle = self.last_recv + self.idle_limit();
                [self.rto_deadline, self.probe_deadline]
                    .into_iter()
                    .flatten()
                    .chain([keepalive, idle])
                    .min()
            }
        }
    }

    /// Runs whatever timers are due at `now`.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::SynSent { attempts, deadline } if now >= deadline => {
                if attempts >= MAX_SYN_ATTEMPTS {
                    self.fail(ConnError::TimedOut);
                } else {
                    self.need_syn = true;
                    self.state = State::SynSent {
                        attempts: attempts + 1,
                        deadline: now + (INITIAL_RTO * (1 << attempts)).min(MAX_RTO),
                    };
                }
            }
            State::Closed if self.linger_until.is_some_and(|t| now >= t) => {
                self.linger_until = None;
            }
            State::Connected => {
                if now >= self.last_recv + self.idle_limit() {
                    self.fail(ConnError::TimedOut);
                    return;
                }
                if self.rto_deadline.is_some_and(|t| now >= t) {
                    self.on_rto(now);
                } else if self.probe_deadline.is_some_and(|t| now >= t) {
                    self.probe_deadline = None;
                    self.probe_armed = false;
                    self.need_probe = self.send.has_unacked();
                }
                if now >= self.last_send + KEEPALIVE_INTERVAL {
                    self.need_ack = true;
                }
            }
            _ => {}
        }
    }

    fn on_rto(&mut self, now: Instant) {
        if !self.send.has_unacked() {
            self.rto_deadline = None;
            return;
        }
        self.timeouts += 1;
        if self.timeouts > MAX_TIMEOUTS {
            self.fail(ConnError::TimedOut);
            return;
        }
        self.losses += 1;
        self.rto_count += 1;
        self.cc.on_timeout();
        self.send.mark_all_lost();
        let _ = self.settle_mtu_probe();
        self.probe_deadline = None;
        self.probe_armed = true;
        let backoff = (self.rtt.rto() * (1 << (self.timeouts - 1).min(16))).min(MAX_RTO);
        self.rto_deadline = Some(now + backoff);
    }
}
