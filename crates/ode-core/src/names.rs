//! The closed sets of choices (`Method`, `StepMode`, `AdjointNorm`, `ControllerKind`,
//! `Problem`, and ode-train's presets, devices and normalisations) by name: [`choice_names!`]
//! gives each its names, `ALL`, `Display` and a `FromStr` whose error lists the accepted names,
//! from one table, so a name cannot be parsed one way and printed another. Serde support writes
//! each as its name and reads it through its `FromStr`, so configuration files, JSON and
//! checkpoint metadata keep the command line's names, aliases and messages.

use crate::{AdjointNorm, ControllerKind, Method, StepMode};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Implements names for a fieldless enum from a table `Variant => "name" | "alias" …`:
/// `ALL` (every variant, in the table's order), `name()` (the first name), `Display` (the
/// name) and `FromStr` (any of the names; otherwise [`OdeError::InvalidChoice`] listing the
/// canonical names, or the error that a trailing `error = |value, expected| …` makes of them).
///
/// ```
/// #[derive(Debug, Clone, Copy, PartialEq)]
/// enum Fruit { Apple, Pear }
/// ode_core::choice_names!(Fruit, "fruit" { Apple => "apple" | "pomme", Pear => "pear" });
/// assert_eq!("pomme".parse::<Fruit>()?, Fruit::Apple);
/// assert_eq!(Fruit::Pear.to_string(), "pear");
/// assert_eq!(Fruit::ALL, [Fruit::Apple, Fruit::Pear]);
/// let e = "fig".parse::<Fruit>().unwrap_err().to_string();
/// assert_eq!(e, "invalid fruit 'fig': expected one of apple, pear");
/// # Ok::<(), ode_core::OdeError>(())
/// ```
///
/// [`OdeError::InvalidChoice`]: crate::OdeError::InvalidChoice
#[macro_export]
macro_rules! choice_names {
    (@join $first:literal $(, $rest:literal)*) => {
        concat!($first $(, ", ", $rest)*)
    };
    ($ty:ident, $kind:literal { $($variant:ident => $name:literal $(| $alias:literal)*),+ $(,)? }) => {
        $crate::choice_names!($ty, $kind { $($variant => $name $(| $alias)*),+ },
            error = |value, expected| $crate::OdeError::InvalidChoice { name: $kind, value, expected });
    };
    ($ty:ident, $kind:literal { $($variant:ident => $name:literal $(| $alias:literal)*),+ $(,)? },
        error = |$value:ident, $expected:ident| $error:expr) => {
        impl $ty {
            /// Every choice, in the order its names are listed.
            pub const ALL: [$ty; [$($name),+].len()] = [$($ty::$variant),+];

            /// The name used in configs, on the command line and in logs.
            pub fn name(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }
        }

        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl ::std::str::FromStr for $ty {
            type Err = $crate::OdeError;
            fn from_str(s: &str) -> ::std::result::Result<Self, $crate::OdeError> {
                match s {
                    $($name $(| $alias)* => Ok($ty::$variant),)+
                    _ => {
                        let ($value, $expected) = (s.to_string(), $crate::choice_names!(@join $($name),+));
                        Err($error)
                    }
                }
            }
        }
    };
}

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
