//! Consumer-group assignment, the same MD5 rule as EventoDB and Message DB.
//!
//! A stream belongs to member `abs(h) % size`, where `h` is the first 8 bytes
//! of the MD5 of the stream's cardinal id read as a big-endian signed 64-bit
//! integer. A stream without a cardinal id (no `-`, or an empty id) belongs to
//! no member. Every SDK that follows Message DB computes the same assignment,
//! so a group spread over processes and languages agrees on who owns what.

use md5::{Digest, Md5};

use crate::error::{Error, Result};
use crate::stream_name::cardinal_id;

/// One member's place in a consumer group: `member` of `size` (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConsumerGroup {
    member: i64,
    size: i64,
}

impl ConsumerGroup {
    /// Member `member` of a group of `size`.
    ///
    /// Refuses a negative member, a size below 1 and `member >= size`, with
    /// EventoDB's messages.
    ///
    /// ```
    /// use eventodb_kit::ConsumerGroup;
    /// let g = ConsumerGroup::new(1, 3)?;
    /// assert!(g.contains("account-123"));
    /// assert!(ConsumerGroup::new(3, 3).is_err());
    /// # Ok::<(), eventodb_kit::Error>(())
    /// ```
    pub fn new(member: i64, size: i64) -> Result<Self> {
        if member < 0 {
            return Err(Error::invalid(
                "options.consumerGroup.member must be non-negative",
            ));
        }
        if size <= 0 {
            return Err(Error::invalid(
                "options.consumerGroup.size must be positive",
            ));
        }
        if member >= size {
            return Err(Error::invalid(
                "options.consumerGroup.member must be < size",
            ));
        }
        Ok(ConsumerGroup { member, size })
    }

    /// This member's index.
    pub fn member(&self) -> i64 {
        self.member
    }

    /// The number of members.
    pub fn size(&self) -> i64 {
        self.size
    }

    /// Whether `stream_name` is assigned to this member.
    pub fn contains(&self, stream_name: &str) -> bool {
        match stream_hash(stream_name) {
            Some(h) => h % self.size == self.member,
            None => false,
        }
    }
}

/// The group hash of a stream, already made non-negative (`abs`), or `None`
/// when the stream has no cardinal id and so belongs to no member.
///
/// `i64::MIN` stays negative, as in EventoDB, and so matches no member.
pub fn stream_hash(stream_name: &str) -> Option<i64> {
    let card = cardinal_id(stream_name)?;
    if card.is_empty() {
        return None;
    }
    Some(hash_64(card).wrapping_abs())
}

/// Message DB's `hash_64`: the first 8 bytes of MD5, big-endian, as `i64`.
pub fn hash_64(value: &str) -> i64 {
    let digest = Md5::digest(value.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked examples of the protocol file (§7).
    #[test]
    fn protocol_vectors() {
        let cases: &[(&str, Option<i64>, [i64; 3])] = &[
            ("account-123", Some(2318431741638412123), [1, 1, 3]),
            ("account-123+retry", Some(2318431741638412123), [1, 1, 3]),
            ("account-456", Some(2669782135874207551), [1, 1, 3]),
            ("account-1", Some(-4266524885998034046), [0, 0, 2]),
            ("account-2", Some(-4026655064267673757), [1, 1, 1]),
            ("account-3", Some(-1383792015730482434), [0, 2, 2]),
            ("account-4", Some(-6305049951010035939), [1, 0, 3]),
            ("order-abc", Some(-8070080442485551184), [0, 2, 0]),
        ];
        for (stream, raw, members) in cases {
            let card = cardinal_id(stream).unwrap();
            assert_eq!(Some(hash_64(card)), *raw, "{stream}");
            for (size, member) in [2, 3, 4].iter().zip(members) {
                let g = ConsumerGroup::new(*member, *size).unwrap();
                assert!(g.contains(stream), "{stream} size {size}");
                for other in 0..*size {
                    if other != *member {
                        assert!(!ConsumerGroup::new(other, *size).unwrap().contains(stream));
                    }
                }
            }
        }
        for size in 1..5 {
            for member in 0..size {
                let g = ConsumerGroup::new(member, size).unwrap();
                assert!(!g.contains("account"));
                assert!(!g.contains("account-"));
            }
        }
    }

    #[test]
    fn validation_messages() {
        let msg = |m, s| ConsumerGroup::new(m, s).unwrap_err().to_string();
        assert!(msg(-1, 2).contains("member must be non-negative"));
        assert!(msg(0, 0).contains("size must be positive"));
        assert!(msg(2, 2).contains("member must be < size"));
    }
}
