//! Comment commands on promotion pull requests, without I/O: parsing a comment, and replaying
//! a PR's comments and reviews into its approvals, its hold, and the answer each new command
//! is owed. Who is an approver is decided outside (it takes API calls) and passed in.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

/// A command, from the first line of a comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Approve,
    ApproveCancel,
    Hold,
    Unhold,
    Rollback,
    /// Clear the bad mark of a rolled-back promotion's digest.
    Unblock,
    Rescan,
    /// Let tugboat act on a held environment again.
    Resume,
    Help,
    /// A line starting with `/` that is none of the above.
    Unknown(String),
}

/// The command a comment gives, if its first non-blank line is one: `/word [arg]`, case
/// insensitive; text after the command line is ignored.
///
/// Only a line that renders as plain text is a command (CommonMark): indented code (four
/// columns or more, a tab counting to the next multiple of four), a fence, a block quote, a
/// list item, a heading (ATX or setext), inline code or HTML is not, so that a quoted or
/// pasted command is never obeyed.
pub fn parse(body: &str) -> Option<Command> {
    let mut lines = body.lines();
    let raw = lines.by_ref().find(|l| !l.trim().is_empty())?;
    if indent_columns(raw) >= 4 {
        return None; // indented code
    }
    if lines.next().is_some_and(is_setext_underline) {
        return None; // the line is a heading
    }
    let line = raw.trim();
    let rest = line.strip_prefix('/')?;
    let mut words = rest.split_whitespace();
    let word = words.next()?.to_ascii_lowercase();
    let arg = words.next().map(str::to_ascii_lowercase);
    Some(match (word.as_str(), arg.as_deref()) {
        ("approve", Some("cancel")) => Command::ApproveCancel,
        ("approve", _) | ("lgtm", None) => Command::Approve,
        ("hold", Some("cancel")) | ("unhold", _) => Command::Unhold,
        ("hold", _) => Command::Hold,
        ("rollback", _) => Command::Rollback,
        ("unblock", _) => Command::Unblock,
        ("rescan", _) => Command::Rescan,
        ("resume", _) => Command::Resume,
        ("help", _) => Command::Help,
        _ => Command::Unknown(format!("/{word}")),
    })
}

/// The word after a command (`/rollback billing` → `billing`), as written, when `body`
/// gives a command and its line has one: a group PR's commands name the service they are for.
pub fn argument(body: &str) -> Option<String> {
    parse(body)?;
    let line = body.lines().find(|l| !l.trim().is_empty())?.trim();
    line.split_whitespace().nth(1).map(str::to_owned)
}

/// How many columns of indentation a line has (a tab advances to the next multiple of 4).
fn indent_columns(line: &str) -> usize {
    let mut col = 0;
    for c in line.chars() {
        match c {
            ' ' => col += 1,
            '\t' => col += 4 - col % 4,
            _ => break,
        }
    }
    col
}

/// A setext heading underline: `===` or `---` (at most three columns indented), which makes
/// the line above it a heading.
fn is_setext_underline(line: &str) -> bool {
    let t = line.trim();
    indent_columns(line) < 4
        && !t.is_empty()
        && (t.bytes().all(|b| b == b'=') || t.bytes().all(|b| b == b'-'))
}

/// The text answering `/help` and unknown commands.
pub const HELP: &str = "tugboat commands (first line of a comment):\n\
- `/approve`, `/approve cancel`: approve this promotion at its current commit, or take your approval back (approvers)\n\
- `/hold`, `/unhold`: stop this promotion from merging, or let it go again (`/unhold`: approvers)\n\
- `/rescan`: scan this PR's image again and refresh the evidence\n\
- `/rollback`: on the merged promotion an environment runs now, revert it (approvers)\n\
- `/hold` on the merged promotion an environment runs now: hold the environment, no promotion until `/resume` (approvers)\n\
- `/resume`: on tugboat's hold issue, or that merged promotion, let tugboat promote to the environment again (approvers)\n\
- `/unblock`: on a rolled-back promotion, let tugboat promote its image again (approvers)\n\
- `/help`: this text";

/// A PR comment as the replay needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment {
    pub id: u64,
    pub user: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
    /// Edited after it was made: an edit is not a new command, so it is never obeyed.
    pub edited: bool,
}

/// A review as the replay needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    pub user: String,
    /// `APPROVED`, `CHANGES_REQUESTED`, `COMMENTED`, `DISMISSED`.
    pub state: String,
    pub commit_id: String,
}

/// How tugboat answers one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Done: a reaction on the comment.
    Accepted,
    /// Not done: a reply saying why.
    Refused(String),
    /// A reply with the command help (`/help`, unknown commands).
    Help,
}

/// A command that wants doing beyond the PR's state (the engine acts on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Rescan,
    Rollback,
    Unblock,
    /// Hold the environment the merged promotion runs in.
    HoldEnvironment,
    /// Lift the environment's hold.
    Resume,
}

/// What the commands are written on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// An open promotion PR: approvals and holds of the PR itself.
    Open,
    /// A merged promotion: `/rollback`, `/unblock`, and the environment's `/hold` and `/resume`.
    Merged,
    /// tugboat's hold issue of an environment: `/resume`.
    HoldIssue,
}

/// What a PR's comments and reviews add up to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrState {
    /// Distinct approvers whose approval holds for the current head.
    pub approvals: BTreeSet<String>,
    /// Who holds the PR, if anyone.
    pub held_by: Option<String>,
    /// Answers owed to commands newer than `answered_through`, by comment id.
    pub answers: BTreeMap<u64, (String, Command, Answer)>,
    /// Accepted commands the engine must carry out, by comment id.
    pub actions: BTreeMap<u64, (String, Action)>,
}

/// Everything the replay needs besides the comments and reviews.
pub struct Context<'a> {
    /// The PR's head commit, and when it was made: approvals before it do not count.
    pub head_sha: &'a str,
    pub head_at: DateTime<Utc>,
    /// tugboat's own login: its comments are never commands.
    pub me: &'a str,
    /// Comment ids up to this one were answered before (recorded in the PR body).
    pub answered_through: u64,
    /// What the comments are on (`/rollback` only on a merged PR; approvals only on an open one).
    pub subject: Subject,
}

/// What an accepted command changes in the replayed state.
enum Effect {
    None,
    Approve,
    Unapprove,
    Hold,
    Unhold,
    Act(Action),
}

/// The answer to one command on `subject`, and what it changes. `may`: the user is an
/// approver; `current`: the comment is newer than the head commit.
fn judge(
    cmd: &Command,
    subject: Subject,
    may: bool,
    current: bool,
    user: &str,
) -> (Answer, Effect) {
    use Subject::{HoldIssue, Merged, Open};
    let refuse = |why: &str| (Answer::Refused(why.to_owned()), Effect::None);
    let not_approver = || refuse(&format!("@{user} is not an approver for this environment"));
    let accept = |effect| (Answer::Accepted, effect);
    match (cmd, subject) {
        (Command::Help | Command::Unknown(_), _) => (Answer::Help, Effect::None),
        (Command::Resume, Open) => refuse(
            "`/resume` lifts an environment's hold: comment it on tugboat's hold issue, or on the merged promotion the environment runs",
        ),
        (Command::Resume, _) if !may => not_approver(),
        (Command::Resume, _) => accept(Effect::Act(Action::Resume)),
        (_, HoldIssue) => {
            refuse("this is tugboat's hold issue of an environment: only `/resume` is read here")
        }
        (Command::Approve | Command::ApproveCancel | Command::Unhold, Merged) => {
            refuse("this promotion is already merged")
        }
        (Command::Hold, Merged) if !may => not_approver(),
        (Command::Hold, Merged) => accept(Effect::Act(Action::HoldEnvironment)),
        (Command::Rollback, Open) => refuse("only a merged promotion can be rolled back"),
        (Command::Unblock, Open) => refuse("only a merged, rolled-back promotion can be unblocked"),
        (Command::Approve | Command::Rollback | Command::Unblock, _) if !may => not_approver(),
        // An approval of an earlier commit: it counted then, not now.
        (Command::Approve, _) if !current => {
            refuse("this approval was for an earlier commit of the PR")
        }
        (Command::Approve, _) => accept(Effect::Approve),
        (Command::ApproveCancel, _) => accept(Effect::Unapprove),
        (Command::Hold, _) => accept(Effect::Hold),
        (Command::Unhold, _) if !may => refuse(&format!(
            "only an approver can lift a hold; @{user} is not one"
        )),
        (Command::Unhold, _) => accept(Effect::Unhold),
        (Command::Rollback, _) => accept(Effect::Act(Action::Rollback)),
        (Command::Unblock, _) => accept(Effect::Act(Action::Unblock)),
        (Command::Rescan, _) => accept(Effect::Act(Action::Rescan)),
    }
}

/// Replay comments (oldest first) and reviews into the PR's state. `approver` says whether a
/// user may approve, unhold and roll back.
pub fn replay(
    comments: &[Comment],
    reviews: &[Review],
    ctx: &Context<'_>,
    approver: impl Fn(&str) -> bool,
) -> PrState {
    let mut st = PrState::default();
    for c in comments {
        if c.user.eq_ignore_ascii_case(ctx.me) || c.user.ends_with("[bot]") {
            continue;
        }
        let Some(cmd) = parse(&c.body) else { continue };
        let new = c.id > ctx.answered_through;
        if c.edited {
            if new {
                st.answers.insert(
                    c.id,
                    (
                        c.user.clone(),
                        cmd,
                        Answer::Refused(
                            "this comment was edited; commands are only read from new comments, so post it again".into(),
                        ),
                    ),
                );
            }
            continue;
        }
        let may = approver(&c.user);
        let current = c.created_at > ctx.head_at;
        let (answer, effect) = judge(&cmd, ctx.subject, may, current, &c.user);
        match effect {
            Effect::None => {}
            Effect::Approve => {
                st.approvals.insert(c.user.clone());
            }
            Effect::Unapprove => {
                st.approvals.remove(&c.user);
            }
            Effect::Hold => st.held_by = Some(c.user.clone()),
            Effect::Unhold => st.held_by = None,
            Effect::Act(action) => {
                if new {
                    st.actions.insert(c.id, (c.user.clone(), action));
                }
            }
        }
        if new {
            st.answers.insert(c.id, (c.user.clone(), cmd, answer));
        }
    }
    // A review approval binds to the commit it was given on.
    let mut latest: BTreeMap<&str, &Review> = BTreeMap::new();
    for r in reviews.iter().filter(|r| r.state != "COMMENTED") {
        latest.insert(r.user.as_str(), r);
    }
    for (user, r) in latest {
        if r.state == "APPROVED"
            && r.commit_id == ctx.head_sha
            && approver(user)
            && ctx.subject == Subject::Open
        {
            st.approvals.insert(user.to_owned());
        }
    }
    st
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commands_argument_is_the_word_after_it_on_its_line_and_only_on_a_command() {
        assert_eq!(argument("/rollback billing").as_deref(), Some("billing"));
        assert_eq!(
            argument("\n  /Unblock  Api_2 now\nthanks").as_deref(),
            Some("Api_2")
        );
        assert_eq!(argument("/rollback"), None);
        assert_eq!(argument("please /rollback billing"), None, "not a command");
        assert_eq!(argument("    /rollback billing"), None, "indented code");
    }

    #[test]
    fn only_a_first_line_that_renders_as_plain_text_is_a_command() {
        for plain in [
            "/approve",
            "   /approve",
            "\n\n/approve\nthanks",
            " \t\n/approve",
        ] {
            assert_eq!(parse(plain), Some(Command::Approve), "{plain:?}");
        }
        for code in [
            "    /approve",       // indented code
            "\t/approve",         // a tab is four columns
            "  \t/approve",       // two spaces and a tab: four columns
            "```\n/approve\n```", // fenced
            "~~~\n/approve\n~~~",
            "> /approve", // block quote
            ">/approve",
            "`/approve`", // inline code
            "- /approve", // list item
            "1. /approve",
            "# /approve",    // ATX heading
            "/approve\n===", // setext headings
            "/approve\n---",
            "<!-- /approve -->", // HTML
            "<p>/approve</p>",
        ] {
            assert_eq!(parse(code), None, "{code:?} is not plain text");
        }
    }

    proptest::proptest! {
        /// Whatever follows, a command word on a plain first line is that command, and the
        /// same line made code, a quote, a list item or a heading is none.
        #[test]
        fn commands_are_read_from_plain_text_only(
            word in proptest::sample::select(vec!["approve", "hold", "unhold", "rollback", "unblock", "rescan", "resume", "help"]),
            lead in 0usize..4,
            deep in 4usize..9,
            tail in "[a-z ]{0,20}(\n[^=\n-][^\n]{0,20}){0,3}",
            wrap in 0usize..6,
        ) {
            let line = format!("/{word}");
            let plain = format!("{}{line}\n{tail}", " ".repeat(lead));
            let expected = parse(&line);
            proptest::prop_assert!(expected.is_some());
            proptest::prop_assert_eq!(parse(&plain), expected);
            let code = match wrap {
                0 => format!("{}{line}\n{tail}", " ".repeat(deep)),
                1 => format!("```\n{line}\n```\n{tail}"),
                2 => format!("> {line}\n{tail}"),
                3 => format!("- {line}\n{tail}"),
                4 => format!("## {line}\n{tail}"),
                _ => format!("{line}\n===\n{tail}"),
            };
            proptest::prop_assert_eq!(parse(&code), None, "{:?}", code);
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn c(id: u64, user: &str, body: &str, when: &str) -> Comment {
        Comment {
            id,
            user: user.into(),
            body: body.into(),
            created_at: at(when),
            edited: false,
        }
    }

    fn ctx(answered: u64) -> Context<'static> {
        Context {
            head_sha: "head",
            head_at: at("2026-11-23T10:00:00Z"),
            me: "tugboat[bot]",
            answered_through: answered,
            subject: Subject::Open,
        }
    }

    #[test]
    fn commands_are_read_from_the_first_line_case_insensitively() {
        assert_eq!(parse("/approve"), Some(Command::Approve));
        assert_eq!(parse("  /APPROVE  \nlooks good"), Some(Command::Approve));
        assert_eq!(parse("/approve cancel"), Some(Command::ApproveCancel));
        assert_eq!(parse("\n/Hold because of the freeze"), Some(Command::Hold));
        assert_eq!(parse("/unhold"), Some(Command::Unhold));
        assert_eq!(parse("/hold cancel"), Some(Command::Unhold));
        assert_eq!(parse("/rescan"), Some(Command::Rescan));
        assert_eq!(parse("/rollback"), Some(Command::Rollback));
        assert_eq!(
            parse("/deploy now"),
            Some(Command::Unknown("/deploy".into()))
        );
        assert_eq!(parse("please /approve"), None, "not the first line's start");
        assert_eq!(parse("looks good\n/approve"), None, "only the first line");
        assert_eq!(parse(""), None);
    }

    #[test]
    fn approvals_count_distinct_approvers_after_the_head_commit() {
        let comments = [
            c(1, "alice", "/approve", "2026-11-23T09:00:00Z"), // before the head: stale
            c(2, "alice", "/approve", "2026-11-23T10:05:00Z"),
            c(3, "alice", "/approve", "2026-11-23T10:06:00Z"), // the same person twice
            c(4, "mallory", "/approve", "2026-11-23T10:07:00Z"),
            c(5, "bob", "/lgtm", "2026-11-23T10:08:00Z"),
        ];
        let st = replay(&comments, &[], &ctx(0), |u| u != "mallory");
        assert_eq!(
            st.approvals,
            BTreeSet::from(["alice".to_owned(), "bob".to_owned()])
        );
        assert!(matches!(&st.answers[&1].2, Answer::Refused(r) if r.contains("earlier commit")));
        assert_eq!(st.answers[&2].2, Answer::Accepted);
        assert!(
            matches!(&st.answers[&4].2, Answer::Refused(r) if r == "@mallory is not an approver for this environment")
        );
        // Answered before: still replayed into the state, but owed no new answer.
        let again = replay(&comments, &[], &ctx(5), |u| u != "mallory");
        assert_eq!(again.approvals, st.approvals);
        assert!(again.answers.is_empty());
    }

    #[test]
    fn a_hold_stops_until_an_approver_lifts_it_and_cancel_takes_an_approval_back() {
        let comments = [
            c(1, "alice", "/approve", "2026-11-23T10:01:00Z"),
            c(2, "dev", "/hold", "2026-11-23T10:02:00Z"),
            c(3, "dev", "/unhold", "2026-11-23T10:03:00Z"),
            c(4, "alice", "/approve cancel", "2026-11-23T10:04:00Z"),
        ];
        let st = replay(&comments, &[], &ctx(0), |u| u == "alice");
        assert_eq!(st.held_by.as_deref(), Some("dev"), "anyone may hold");
        assert!(matches!(&st.answers[&3].2, Answer::Refused(r) if r.contains("only an approver")));
        assert!(st.approvals.is_empty());
        let lifted = replay(
            &[
                comments[1].clone(),
                c(5, "alice", "/unhold", "2026-11-23T10:05:00Z"),
            ],
            &[],
            &ctx(0),
            |u| u == "alice",
        );
        assert_eq!(lifted.held_by, None);
    }

    #[test]
    fn edited_comments_and_tugboats_own_are_never_obeyed() {
        let mut edited = c(1, "alice", "/approve", "2026-11-23T10:01:00Z");
        edited.edited = true;
        let mine = c(2, "tugboat[bot]", "/approve", "2026-11-23T10:02:00Z");
        let st = replay(&[edited, mine], &[], &ctx(0), |_| true);
        assert!(st.approvals.is_empty());
        assert!(matches!(&st.answers[&1].2, Answer::Refused(r) if r.contains("edited")));
        assert!(!st.answers.contains_key(&2), "tugboat never answers itself");
    }

    #[test]
    fn review_approvals_bind_to_their_commit_and_the_latest_review_wins() {
        let review = |user: &str, state: &str, commit: &str| Review {
            user: user.into(),
            state: state.into(),
            commit_id: commit.into(),
        };
        let reviews = [
            review("alice", "APPROVED", "head"),
            review("bob", "APPROVED", "old"),
            review("carol", "APPROVED", "head"),
            review("carol", "CHANGES_REQUESTED", "head"),
            review("dave", "APPROVED", "head"),
            review("dave", "COMMENTED", "head"),
        ];
        let st = replay(&[], &reviews, &ctx(0), |_| true);
        assert_eq!(
            st.approvals,
            BTreeSet::from(["alice".to_owned(), "dave".to_owned()])
        );
    }

    #[test]
    fn rescan_and_rollback_become_actions_once_and_help_answers_unknown_commands() {
        let comments = [
            c(1, "dev", "/rescan", "2026-11-23T10:01:00Z"),
            c(2, "alice", "/rollback", "2026-11-23T10:02:00Z"),
            c(3, "dev", "/deploy", "2026-11-23T10:03:00Z"),
        ];
        let st = replay(&comments, &[], &ctx(0), |u| u == "alice");
        assert_eq!(st.actions[&1].1, Action::Rescan);
        assert!(
            matches!(&st.answers[&2].2, Answer::Refused(r) if r.contains("only a merged")),
            "not merged yet"
        );
        assert_eq!(st.answers[&3].2, Answer::Help);
        let merged = Context {
            subject: Subject::Merged,
            ..ctx(1)
        };
        let st = replay(&comments, &[], &merged, |u| u == "alice");
        assert_eq!(st.actions.get(&2).map(|a| &a.1), Some(&Action::Rollback));
        assert!(!st.actions.contains_key(&1), "answered before: not redone");
    }

    #[test]
    fn an_environment_is_held_and_resumed_by_approvers_on_the_merged_promotion_or_the_hold_issue() {
        let comments = vec![
            c(1, "dev", "/hold", "2026-11-23T10:01:00Z"),
            c(2, "alice", "/hold", "2026-11-23T10:02:00Z"),
            c(3, "dev", "/resume", "2026-11-23T10:03:00Z"),
            c(4, "alice", "/resume", "2026-11-23T10:04:00Z"),
            c(5, "alice", "/approve", "2026-11-23T10:05:00Z"),
        ];
        let on = |subject| Context { subject, ..ctx(0) };
        let st = replay(&comments, &[], &on(Subject::Merged), |u| u == "alice");
        assert!(matches!(&st.answers[&1].2, Answer::Refused(r) if r.contains("not an approver")));
        assert_eq!(st.actions[&2].1, Action::HoldEnvironment);
        assert!(matches!(&st.answers[&3].2, Answer::Refused(r) if r.contains("not an approver")));
        assert_eq!(st.actions[&4].1, Action::Resume);
        assert!(
            st.held_by.is_none(),
            "a merged PR's /hold holds the environment, not the PR"
        );

        let st = replay(&comments, &[], &on(Subject::HoldIssue), |u| u == "alice");
        assert_eq!(st.actions.len(), 1, "only /resume is read on a hold issue");
        assert_eq!(st.actions[&4].1, Action::Resume);
        assert!(matches!(&st.answers[&5].2, Answer::Refused(r) if r.contains("only `/resume`")));
        assert!(st.approvals.is_empty());

        let st = replay(&comments, &[], &on(Subject::Open), |u| u == "alice");
        assert_eq!(
            st.held_by.as_deref(),
            Some("alice"),
            "on an open PR /hold holds the PR"
        );
        assert!(matches!(&st.answers[&4].2, Answer::Refused(r) if r.contains("hold issue")));
        assert!(st.actions.is_empty());
    }
}
