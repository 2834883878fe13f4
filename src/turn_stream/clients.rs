//! Which local TURN client is served by which connection to the server. Every webrtc socket
//! that allocates a relay is a client of its own (the server ties an allocation to its
//! connection), so each gets its own connection, opened on its first datagram and forgotten
//! when the connection ends or the client has been quiet for longer than any TURN client stays
//! quiet. The table is bounded: a client past the limit is refused, not queued.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// What to do with a datagram from a local client.
#[derive(Debug, PartialEq, Eq)]
pub enum Route<'a, T> {
    /// Hand it to this client's connection.
    Existing(&'a T),
    /// The client has no connection: open one and [`Clients::insert`] it.
    Open,
    /// The table is full; drop the datagram.
    Full,
}

#[derive(Debug)]
struct Entry<T> {
    connection: T,
    generation: u64,
    last_heard: Instant,
}

#[derive(Debug)]
pub struct Clients<T> {
    entries: HashMap<SocketAddr, Entry<T>>,
    capacity: usize,
    idle_limit: Duration,
    next_generation: u64,
}

impl<T> Clients<T> {
    pub fn new(capacity: usize, idle_limit: Duration) -> Self {
        Self {
            entries: HashMap::new(),
            capacity,
            idle_limit,
            next_generation: 0,
        }
    }

    /// A datagram arrived from `client` at `now`.
    pub fn route(&mut self, client: SocketAddr, now: Instant) -> Route<'_, T> {
        let full = self.entries.len() >= self.capacity;
        match self.entries.get_mut(&client) {
            Some(entry) => {
                entry.last_heard = now;
                Route::Existing(&entry.connection)
            }
            None if full => Route::Full,
            None => Route::Open,
        }
    }

    /// Records the connection just opened for `client`; its generation, which the connection
    /// names when it ends, so that an old connection's end never removes a newer one.
    pub fn insert(&mut self, client: SocketAddr, connection: T, now: Instant) -> u64 {
        let generation = self.next_generation;
        self.next_generation += 1;
        self.entries.insert(
            client,
            Entry {
                connection,
                generation,
                last_heard: now,
            },
        );
        generation
    }

    /// The connection of that generation has ended; `true` when it was still the client's.
    pub fn ended(&mut self, client: SocketAddr, generation: u64) -> bool {
        let current = self
            .entries
            .get(&client)
            .is_some_and(|entry| entry.generation == generation);
        if current {
            self.entries.remove(&client);
        }
        current
    }

    /// Removes and returns the clients quiet for longer than the idle limit: dropping their
    /// connections closes them.
    pub fn expire(&mut self, now: Instant) -> Vec<(SocketAddr, T)> {
        let idle: Vec<SocketAddr> = self
            .entries
            .iter()
            .filter(|(_, entry)| now.saturating_duration_since(entry.last_heard) > self.idle_limit)
            .map(|(client, _)| *client)
            .collect();
        idle.into_iter()
            .filter_map(|client| {
                self.entries
                    .remove(&client)
                    .map(|entry| (client, entry.connection))
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], port))
    }

    #[test]
    fn a_new_client_opens_a_connection_a_known_one_uses_its_own() {
        let now = Instant::now();
        let mut clients = Clients::new(4, Duration::from_secs(60));
        assert_eq!(clients.route(addr(1), now), Route::Open);
        clients.insert(addr(1), "first", now);
        assert_eq!(clients.route(addr(1), now), Route::Existing(&"first"));
        assert_eq!(clients.route(addr(2), now), Route::Open);
    }

    #[test]
    fn the_table_refuses_clients_beyond_its_capacity() {
        let now = Instant::now();
        let mut clients = Clients::new(2, Duration::from_secs(60));
        clients.insert(addr(1), 1, now);
        clients.insert(addr(2), 2, now);
        assert_eq!(clients.route(addr(3), now), Route::Full);
        assert_eq!(clients.route(addr(2), now), Route::Existing(&2));
    }

    #[test]
    fn only_the_current_connection_ending_forgets_the_client() {
        let now = Instant::now();
        let mut clients = Clients::new(4, Duration::from_secs(60));
        let old = clients.insert(addr(1), "old", now);
        let new = clients.insert(addr(1), "new", now);
        assert!(!clients.ended(addr(1), old), "a replaced connection ended");
        assert_eq!(clients.route(addr(1), now), Route::Existing(&"new"));
        assert!(clients.ended(addr(1), new));
        assert!(clients.is_empty());
    }

    #[test]
    fn quiet_clients_expire_and_talking_ones_stay() {
        let start = Instant::now();
        let mut clients = Clients::new(4, Duration::from_secs(60));
        clients.insert(addr(1), 1, start);
        clients.insert(addr(2), 2, start);
        let later = start + Duration::from_secs(50);
        assert!(matches!(clients.route(addr(2), later), Route::Existing(_)));
        assert!(clients.expire(later).is_empty());
        let expired = clients.expire(start + Duration::from_secs(61));
        assert_eq!(expired, vec![(addr(1), 1)]);
        assert_eq!(clients.len(), 1);
    }
}
