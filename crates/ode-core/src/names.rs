//! Serde support for the closed sets of choices (`Method`, `StepMode`, `AdjointNorm`): each is
//! written as its name (`dopri5`, `per_sample`, `seminorm`) and read through its `FromStr`, so
//! configuration files, JSON and checkpoint metadata keep today's names and aliases, and a bad
//! name gets the same message as on the command line.

use crate::{AdjointNorm, ControllerKind, Method, StepMode};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! serde_by_name {
    ($($ty:ty),*) => {$(
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let name = String::deserialize(d)?;
                name.parse().map_err(D::Error::custom)
            }
        }
    )*};
}

serde_by_name!(Method, StepMode, AdjointNorm, ControllerKind);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_round_trip_through_their_names() {
        for m in Method::ALL {
            let json = serde_json::to_string(&m).unwrap();
            assert_eq!(json, format!("\"{}\"", m.name()));
            assert_eq!(serde_json::from_str::<Method>(&json).unwrap(), m);
        }
        for s in [StepMode::Shared, StepMode::PerSample] {
            assert_eq!(
                serde_json::from_str::<StepMode>(&serde_json::to_string(&s).unwrap()).unwrap(),
                s
            );
        }
        for n in [AdjointNorm::Seminorm, AdjointNorm::Mixed] {
            assert_eq!(
                serde_json::from_str::<AdjointNorm>(&serde_json::to_string(&n).unwrap()).unwrap(),
                n
            );
        }
        assert_eq!(serde_json::to_string(&Method::Rk4Classic).unwrap(), "\"rk4_classic\"");
        assert_eq!(serde_json::to_string(&StepMode::PerSample).unwrap(), "\"per_sample\"");
        // Aliases read as on the command line; unknown names get the command line's message.
        assert_eq!(
            serde_json::from_str::<Method>("\"adaptive_heun\"").unwrap(),
            Method::Heun2
        );
        let e = serde_json::from_str::<Method>("\"rk45\"").unwrap_err().to_string();
        assert!(e.contains("unknown solver 'rk45'"), "{e}");
    }
}
