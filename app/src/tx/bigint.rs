//! The signed big integer of Transfer/Stake/Unstake, with the original's encodings:
//! JSON `[sign, [u32 digits, least significant first]]`, hash bytes as signed big-endian
//! two's complement, output form as a decimal string. Normalised exactly as the original's
//! `num-bigint` 0.4 normalises on decoding (a zero magnitude has sign 0; sign 0 means zero).

use std::fmt;

use serde::de::Error as _;

#[derive(Clone, PartialEq, Eq, Default)]
pub struct BigInt {
    /// -1, 0 or 1; 0 exactly when `digits` is empty.
    sign: i8,
    /// Magnitude, least significant 32-bit digit first, no trailing zero digits.
    digits: Vec<u32>,
}

impl BigInt {
    /// Builds a normalised value from a sign (-1, 0, 1) and magnitude digits.
    pub fn from_parts(sign: i8, mut digits: Vec<u32>) -> Option<Self> {
        if !(-1..=1).contains(&sign) {
            return None;
        }
        while digits.last() == Some(&0) {
            digits.pop();
        }
        if sign == 0 || digits.is_empty() {
            return Some(Self::default());
        }
        Some(Self { sign, digits })
    }

    pub fn from_i128(value: i128) -> Self {
        let sign = value.signum() as i8;
        let mut magnitude = value.unsigned_abs();
        let mut digits = Vec::new();
        while magnitude > 0 {
            digits.push(magnitude as u32);
            magnitude >>= 32;
        }
        Self { sign, digits }
    }

    pub fn sign(&self) -> i8 {
        self.sign
    }

    pub fn digits(&self) -> &[u32] {
        &self.digits
    }

    /// Signed big-endian two's complement, as `num_bigint::BigInt::to_signed_bytes_be`.
    pub fn to_signed_bytes_be(&self) -> Vec<u8> {
        let mut bytes: Vec<u8> = self
            .digits
            .iter()
            .rev()
            .flat_map(|d| d.to_be_bytes())
            .skip_while(|b| *b == 0)
            .collect();
        if bytes.is_empty() {
            bytes.push(0);
        }
        let first = bytes[0];
        let negative = self.sign < 0;
        let exact_min = first == 0x80 && bytes[1..].iter().all(|b| *b == 0) && negative;
        if first > 0x7f && !exact_min {
            bytes.insert(0, 0);
        }
        if negative {
            // Two's complement: invert, then add one from the least significant end.
            let mut carry = true;
            for b in bytes.iter_mut().rev() {
                *b = !*b;
                if carry {
                    let (v, overflow) = b.overflowing_add(1);
                    *b = v;
                    carry = overflow;
                }
            }
        }
        bytes
    }
}

impl fmt::Display for BigInt {
    /// Decimal, with a leading `-` when negative (the original's output form).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.digits.is_empty() {
            return f.write_str("0");
        }
        // Repeated division by 10^9 over the base-2^32 digits.
        let mut rest = self.digits.clone();
        let mut chunks = Vec::new();
        while !rest.is_empty() {
            let mut remainder: u64 = 0;
            for d in rest.iter_mut().rev() {
                let acc = (remainder << 32) | u64::from(*d);
                *d = (acc / 1_000_000_000) as u32;
                remainder = acc % 1_000_000_000;
            }
            while rest.last() == Some(&0) {
                rest.pop();
            }
            chunks.push(remainder as u32);
        }
        if self.sign < 0 {
            f.write_str("-")?;
        }
        let mut iter = chunks.iter().rev();
        if let Some(first) = iter.next() {
            write!(f, "{first}")?;
        }
        for chunk in iter {
            write!(f, "{chunk:09}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for BigInt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BigInt({self})")
    }
}

impl serde::Serialize for BigInt {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (self.sign, &self.digits).serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for BigInt {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (sign, digits): (i8, Vec<u32>) = serde::Deserialize::deserialize(deserializer)?;
        Self::from_parts(sign, digits)
            .ok_or_else(|| D::Error::custom("a big integer's sign must be -1, 0 or 1"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_bytes_match_num_bigint() {
        let cases: [(i128, &[u8]); 9] = [
            (0, &[0]),
            (7, &[7]),
            (-7, &[0xf9]),
            (127, &[0x7f]),
            (128, &[0x00, 0x80]),
            (-128, &[0x80]),
            (-129, &[0xff, 0x7f]),
            (12345, &[0x30, 0x39]),
            (1 << 40, &[1, 0, 0, 0, 0, 0]),
        ];
        for (value, bytes) in cases {
            assert_eq!(
                BigInt::from_i128(value).to_signed_bytes_be(),
                bytes,
                "{value}"
            );
        }
    }

    #[test]
    fn decimal_and_normalisation() {
        for v in [
            0i128,
            1,
            -1,
            999_999_999,
            1_000_000_000,
            -(1 << 100),
            i128::MAX,
        ] {
            assert_eq!(BigInt::from_i128(v).to_string(), v.to_string());
        }
        assert_eq!(BigInt::from_parts(0, vec![5]), Some(BigInt::default()));
        assert_eq!(BigInt::from_parts(1, vec![0, 0]), Some(BigInt::default()));
        assert_eq!(BigInt::from_parts(2, vec![1]), None);
        let parsed: BigInt = serde_json::from_str("[1,[0,256]]").expect("valid");
        assert_eq!(parsed.to_string(), "1099511627776");
        assert_eq!(serde_json::to_string(&parsed).expect("json"), "[1,[0,256]]");
    }
}
