//! Which versions of a function are live after a deploy, promote or rollback (pure; the store applies the result).

use outpost_proto::api::LiveVersion;

use crate::error::ControlError;

/// The live set after deploying `new`: alone at 100%, or, for `percent` below 100,
/// next to the newest currently live version, which keeps the rest.
pub(crate) fn after_deploy(
    current: &[LiveVersion],
    new: u64,
    percent: Option<u8>,
) -> Result<Vec<LiveVersion>, ControlError> {
    match percent.unwrap_or(100) {
        100 => Ok(vec![sole(new)]),
        percent @ 1..=99 => {
            let previous = current.first().ok_or_else(|| {
                ControlError::Conflict(
                    "a gradual deploy needs a live version to share traffic with; deploy without `percent` first"
                        .into(),
                )
            })?;
            Ok(vec![
                LiveVersion {
                    version: new,
                    percent,
                },
                LiveVersion {
                    version: previous.version,
                    percent: 100 - percent,
                },
            ])
        }
        other => Err(ControlError::BadRequest(format!(
            "percent must be between 1 and 100, not {other}"
        ))),
    }
}

/// The live set after promoting a gradual deploy: its new version alone.
pub(crate) fn after_promote(current: &[LiveVersion]) -> Result<Vec<LiveVersion>, ControlError> {
    match current {
        [newest, _] => Ok(vec![sole(newest.version)]),
        _ => Err(ControlError::Conflict(
            "no gradual deploy in progress; nothing to promote".into(),
        )),
    }
}

/// The version a rollback without an explicit version goes back to: the stable version
/// of a split in progress, or else the version that was live (alone, or as the stable
/// side of a split) before the current one. `history` lists every live set the function
/// had, oldest first, the current one included. Rolling back twice therefore returns to
/// where it started, like `cd -`.
pub(crate) fn rollback_target(
    current: &[LiveVersion],
    history: &[Vec<LiveVersion>],
) -> Result<u64, ControlError> {
    match current {
        [_, stable] => Ok(stable.version),
        [only] => history
            .iter()
            .rev()
            .filter_map(|set| set.last())
            .map(|stable| stable.version)
            .find(|&version| version != only.version)
            .ok_or_else(|| {
                ControlError::Conflict("no earlier live version to roll back to".into())
            }),
        _ => Err(ControlError::Conflict(
            "the function has no live version to roll back from".into(),
        )),
    }
}

/// `version` alone at 100%.
pub(crate) fn sole(version: u64) -> LiveVersion {
    LiveVersion {
        version,
        percent: 100,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A live set from `(version, percent)` pairs.
    pub(crate) fn live(pairs: &[(u64, u8)]) -> Vec<LiveVersion> {
        pairs
            .iter()
            .map(|&(version, percent)| LiveVersion { version, percent })
            .collect()
    }

    #[test]
    fn deploy_replaces_or_splits() -> Result<(), ControlError> {
        assert_eq!(after_deploy(&[], 1, None)?, live(&[(1, 100)]));
        assert_eq!(
            after_deploy(&live(&[(1, 100)]), 2, Some(100))?,
            live(&[(2, 100)])
        );
        assert_eq!(
            after_deploy(&live(&[(1, 100)]), 2, Some(10))?,
            live(&[(2, 10), (1, 90)])
        );
        // A new split during a split shares with the newest live version.
        assert_eq!(
            after_deploy(&live(&[(2, 10), (1, 90)]), 3, Some(20))?,
            live(&[(3, 20), (2, 80)])
        );
        Ok(())
    }

    #[test]
    fn deploy_refuses_bad_percent_and_split_without_live() {
        assert!(matches!(
            after_deploy(&[], 1, Some(50)),
            Err(ControlError::Conflict(_))
        ));
        for bad in [0, 101, 255] {
            assert!(matches!(
                after_deploy(&live(&[(1, 100)]), 2, Some(bad)),
                Err(ControlError::BadRequest(_))
            ));
        }
    }

    #[test]
    fn promote_needs_a_split() -> Result<(), ControlError> {
        assert_eq!(
            after_promote(&live(&[(2, 10), (1, 90)]))?,
            live(&[(2, 100)])
        );
        assert!(matches!(
            after_promote(&live(&[(2, 100)])),
            Err(ControlError::Conflict(_))
        ));
        Ok(())
    }

    #[test]
    fn rollback_goes_to_the_previous_stable_version() -> Result<(), ControlError> {
        // During a split: back to its stable side.
        let history = vec![live(&[(1, 100)]), live(&[(2, 10), (1, 90)])];
        assert_eq!(rollback_target(&history[1], &history)?, 1);
        // After promote: the stable side of the split before it.
        let mut history = history;
        history.push(live(&[(2, 100)]));
        assert_eq!(rollback_target(&live(&[(2, 100)]), &history)?, 1);
        // After rolling back to 1, rolling back again returns to 2.
        history.push(live(&[(1, 100)]));
        assert_eq!(rollback_target(&live(&[(1, 100)]), &history)?, 2);
        Ok(())
    }

    #[test]
    fn rollback_without_history_is_a_conflict() {
        let only = live(&[(1, 100)]);
        assert!(matches!(
            rollback_target(&only, std::slice::from_ref(&only)),
            Err(ControlError::Conflict(_))
        ));
        assert!(matches!(
            rollback_target(&[], &[]),
            Err(ControlError::Conflict(_))
        ));
    }
}
