//! Which MQTT protocol version a client speaks, read from the first bytes of its CONNECT.
//!
//! The embedded broker (rumqttd) serves MQTT 3.1.1 and MQTT 5 on separate listeners, while
//! users expect one port that takes both, as mosquitto's does: most tools (Home Assistant,
//! Node-RED, paho, `mosquitto_sub`) connect with 3.1.1 unless told otherwise. The broker's
//! public port reads this much of each connection, then hands it to the listener for its
//! version. What a stranger sends here is read with bounds and gets a typed error.

/// Bytes that always tell the version: packet type, at most four bytes of remaining length,
/// the protocol name's length and the longest name ("MQIsdp"), and the level.
pub const ENOUGH_BYTES: usize = 1 + 4 + 2 + 6 + 1;

/// The MQTT versions a CONNECT can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MqttVersion {
    /// MQTT 3.1 ("MQIsdp", level 3), served as 3.1.1's older sibling.
    V31,
    /// MQTT 3.1.1 ("MQTT", level 4).
    V311,
    /// MQTT 5 ("MQTT", level 5).
    V5,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SniffError {
    #[error("the first packet is not a CONNECT (first byte {0:#04x})")]
    NotConnect(u8),
    #[error("the CONNECT's remaining length is malformed")]
    BadLength,
    #[error("the CONNECT names protocol {0:?}, not MQTT")]
    NotMqtt(String),
    #[error("the CONNECT asks for protocol level {0}, which this broker does not speak")]
    UnknownLevel(u8),
}

/// The version the CONNECT at the start of `bytes` asks for; `Ok(None)` while more bytes are
/// needed (never once [`ENOUGH_BYTES`] have come).
pub fn sniff(bytes: &[u8]) -> Result<Option<MqttVersion>, SniffError> {
    let Some((&first, rest)) = bytes.split_first() else {
        return Ok(None);
    };
    // MQTT-3.1.0: CONNECT is packet type 1 and its flags are 0.
    if first != 0x10 {
        return Err(SniffError::NotConnect(first));
    }
    // The remaining length: one to four bytes, seven bits each, high bit for "more".
    let mut length_bytes = 0;
    loop {
        let Some(&byte) = rest.get(length_bytes) else {
            return Ok(None);
        };
        length_bytes += 1;
        if byte & 0x80 == 0 {
            break;
        }
        if length_bytes == 4 {
            return Err(SniffError::BadLength);
        }
    }
    let Some(header) = rest.get(length_bytes..) else {
        return Ok(None);
    };
    let [high, low, name @ ..] = header else {
        return Ok(None);
    };
    let name_len = usize::from(u16::from_be_bytes([*high, *low]));
    let (expected, levels): (&[u8], &[(u8, MqttVersion)]) = match name_len {
        4 => (b"MQTT", &[(4, MqttVersion::V311), (5, MqttVersion::V5)]),
        6 => (b"MQIsdp", &[(3, MqttVersion::V31)]),
        _ => return Err(SniffError::NotMqtt(format!("a name of {name_len} bytes"))),
    };
    let Some(got) = name.get(..name_len) else {
        // What has come must already match.
        if !expected.starts_with(name) {
            return Err(not_mqtt(name));
        }
        return Ok(None);
    };
    if got != expected {
        return Err(not_mqtt(got));
    }
    let Some(&level) = name.get(name_len) else {
        return Ok(None);
    };
    levels
        .iter()
        .find(|(known, _)| *known == level)
        .map(|(_, version)| Some(*version))
        .ok_or(SniffError::UnknownLevel(level))
}

fn not_mqtt(name: &[u8]) -> SniffError {
    SniffError::NotMqtt(String::from_utf8_lossy(name).chars().take(16).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CONNECT as clients send it, up to the connect flags.
    fn connect(name: &[u8], level: u8) -> Vec<u8> {
        let mut packet = vec![0x10, 0x2a, 0x00, name.len() as u8];
        packet.extend_from_slice(name);
        packet.extend_from_slice(&[level, 0x02, 0x00, 0x3c]);
        packet
    }

    #[test]
    fn each_version_is_told_apart() {
        assert_eq!(sniff(&connect(b"MQTT", 4)), Ok(Some(MqttVersion::V311)));
        assert_eq!(sniff(&connect(b"MQTT", 5)), Ok(Some(MqttVersion::V5)));
        assert_eq!(sniff(&connect(b"MQIsdp", 3)), Ok(Some(MqttVersion::V31)));
    }

    #[test]
    fn a_long_remaining_length_is_read_through() {
        // mosquitto_pub -V 5 with a large will: a two-byte remaining length.
        let mut packet = vec![0x10, 0xc1, 0x02, 0x00, 0x04];
        packet.extend_from_slice(b"MQTT");
        packet.push(5);
        assert_eq!(sniff(&packet), Ok(Some(MqttVersion::V5)));
    }

    #[test]
    fn every_prefix_asks_for_more_and_no_more_than_enough_is_needed() {
        for packet in [connect(b"MQTT", 4), connect(b"MQIsdp", 3)] {
            let level_at = packet.len() - 4;
            for cut in 0..=level_at {
                assert_eq!(sniff(&packet[..cut]), Ok(None), "cut at {cut}");
            }
            assert!(level_at < ENOUGH_BYTES);
        }
        let mut longest = vec![0x10, 0xff, 0xff, 0xff, 0x7f, 0x00, 0x06];
        longest.extend_from_slice(b"MQIsdp");
        longest.push(3);
        assert_eq!(longest.len(), ENOUGH_BYTES);
        assert_eq!(sniff(&longest), Ok(Some(MqttVersion::V31)));
    }

    #[test]
    fn junk_is_refused_as_soon_as_it_shows() {
        assert_eq!(
            sniff(b"GET / HTTP/1.1\r\n"),
            Err(SniffError::NotConnect(b'G'))
        );
        assert_eq!(
            sniff(&[0x30, 0x02, 0x00]),
            Err(SniffError::NotConnect(0x30))
        );
        assert_eq!(
            sniff(&[0x10, 0xff, 0xff, 0xff, 0xff, 0x00]),
            Err(SniffError::BadLength)
        );
        assert!(matches!(
            sniff(&[0x10, 0x10, 0x00, 0x04, b'H', b'T']),
            Err(SniffError::NotMqtt(_))
        ));
        assert!(matches!(
            sniff(&[0x10, 0x10, 0x00, 0x09]),
            Err(SniffError::NotMqtt(_))
        ));
        assert_eq!(
            sniff(&connect(b"MQTT", 6)),
            Err(SniffError::UnknownLevel(6))
        );
        assert_eq!(
            sniff(&connect(b"MQTT", 3)),
            Err(SniffError::UnknownLevel(3))
        );
    }
}
