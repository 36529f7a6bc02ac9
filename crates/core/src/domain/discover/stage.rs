//! Guessing an environment's stage from a name: `user-service-prod` is production,
//! `overlays/staging` is staging. The guess orders environments (dev → staging → prod) and
//! is explained, never silent.

/// The stages tugboat knows by name, earliest first: (rank, what a person calls it, words).
const STAGES: [(u8, &str, &[&str]); 4] = [
    (
        0,
        "a development name",
        &["dev", "develop", "development", "sandbox"],
    ),
    (
        10,
        "a test name",
        &["test", "testing", "qa", "int", "integration", "sit"],
    ),
    (
        20,
        "a pre-production name",
        &["stage", "staging", "stg", "preprod", "uat", "perf"],
    ),
    (
        30,
        "a production name",
        &["prod", "production", "prd", "live"],
    ),
];

/// Where a name with no known stage word goes: after staging, before production (a
/// production environment is the one that must come last).
pub const UNKNOWN_RANK: u8 = 25;

/// A stage found in a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// The word as the name spells it (lower case): the environment's name.
    pub word: String,
    pub rank: u8,
    /// Why it ranks so: "'prod' is a production name".
    pub why: String,
}

/// The stage a name says, from its last word that names one (`api-prod-eu` → `prod`).
pub fn of(name: &str) -> Option<Stage> {
    name.split(|c: char| !c.is_ascii_alphanumeric())
        .rev()
        .map(str::to_ascii_lowercase)
        .find_map(|word| {
            STAGES.iter().find_map(|(rank, what, words)| {
                words.contains(&word.as_str()).then(|| Stage {
                    why: format!("'{word}' is {what}"),
                    word: word.clone(),
                    rank: *rank,
                })
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_stage_word_of_a_name_is_its_stage() {
        let s = of("user-service-prod").unwrap();
        assert_eq!((s.word.as_str(), s.rank), ("prod", 30));
        assert_eq!(s.why, "'prod' is a production name");
        assert_eq!(of("api_staging_eu").unwrap().word, "staging");
        assert_eq!(of("qa-dev").unwrap().word, "dev");
        assert_eq!(of("apps/x/overlays/Production").unwrap().word, "production");
    }

    #[test]
    fn a_name_without_a_stage_word_has_none_and_words_inside_others_do_not_count() {
        assert_eq!(of("payments-blue"), None);
        assert_eq!(of("devops-tools"), None);
        assert_eq!(of("product-api"), None);
    }

    #[test]
    fn stages_rank_development_before_test_before_staging_before_production() {
        let rank = |n: &str| of(n).unwrap().rank;
        assert!(rank("dev") < rank("qa"));
        assert!(rank("qa") < rank("uat"));
        assert!(rank("uat") < UNKNOWN_RANK);
        assert!(UNKNOWN_RANK < rank("live"));
    }
}
