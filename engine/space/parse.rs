//! The arch string form `|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`: parsing and printing.

use std::fmt;
use std::str::FromStr;

use super::{Arch, Op, EDGES, NODES};

/// Why an arch string was rejected; offsets are byte offsets into the input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ArchParseError {
    #[error("empty arch string")]
    Empty,
    #[error("expected {expected} nodes separated by `+`, found {found}", expected = NODES - 1)]
    NodeCount { found: usize },
    #[error("node {node} (at offset {offset}) must have {node} incoming edges, found {found}")]
    EdgeCount {
        node: usize,
        offset: usize,
        found: usize,
    },
    #[error("missing `|` at offset {offset}")]
    MissingBar { offset: usize },
    #[error("stray {text:?} at offset {offset}: edges are written `|op~input|`")]
    Stray { offset: usize, text: String },
    #[error("edge {from}->{to} at offset {offset}: expected `op~{from}`, found {found:?}")]
    MalformedEdge {
        from: usize,
        to: usize,
        offset: usize,
        found: String,
    },
    #[error(
        "unknown op {name:?} at offset {offset}; valid ops: {}",
        valid_op_names()
    )]
    UnknownOp { name: String, offset: usize },
    #[error(
        "edge {expected}->{to} at offset {offset}: input must be `~{expected}`, found `~{found}`"
    )]
    WrongInput {
        to: usize,
        expected: usize,
        offset: usize,
        found: String,
    },
}

fn valid_op_names() -> String {
    Op::ALL.map(Op::name).join(", ")
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for to in 1..NODES {
            if to > 1 {
                f.write_str("+")?;
            }
            f.write_str("|")?;
            for ((from, _), op) in EDGES.iter().zip(self.ops).filter(|((_, t), _)| *t == to) {
                write!(f, "{op}~{from}|")?;
            }
        }
        Ok(())
    }
}

impl FromStr for Arch {
    type Err = ArchParseError;

    fn from_str(s: &str) -> Result<Arch, ArchParseError> {
        if s.is_empty() {
            return Err(ArchParseError::Empty);
        }
        let groups = split_with_offsets(s, '+', 0);
        if groups.len() != NODES - 1 {
            return Err(ArchParseError::NodeCount {
                found: groups.len(),
            });
        }
        let mut ops = Vec::with_capacity(EDGES.len());
        for (to, (offset, group)) in (1..).zip(groups) {
            parse_node(to, offset, group, &mut ops)?;
        }
        Ok(Arch {
            ops: ops.try_into().expect("3 nodes with 1, 2, 3 edges make 6"),
        })
    }
}

/// Parses `|op~0|...|op~{to-1}|` (the edges into node `to`) starting at `offset`.
fn parse_node(
    to: usize,
    offset: usize,
    group: &str,
    ops: &mut Vec<Op>,
) -> Result<(), ArchParseError> {
    let pieces = split_with_offsets(group, '|', offset);
    let (first, last) = (pieces[0], pieces[pieces.len() - 1]);
    // A piece outside the bars is an edge missing its bar when it looks like one, else stray.
    for (piece_offset, piece, bar_offset) in [
        (first.0, first.1, offset),
        (last.0, last.1, offset + group.len()),
    ] {
        if !piece.is_empty() {
            return Err(if piece.contains('~') {
                ArchParseError::MissingBar { offset: bar_offset }
            } else {
                ArchParseError::Stray {
                    offset: piece_offset,
                    text: piece.to_string(),
                }
            });
        }
    }
    let edges = if pieces.len() < 2 {
        &[][..]
    } else {
        &pieces[1..pieces.len() - 1]
    };
    if edges.len() != to {
        return Err(ArchParseError::EdgeCount {
            node: to,
            offset,
            found: edges.len(),
        });
    }
    for (from, &(edge_offset, edge)) in edges.iter().enumerate() {
        let Some((name, input)) = edge.split_once('~') else {
            return Err(ArchParseError::MalformedEdge {
                from,
                to,
                offset: edge_offset,
                found: edge.to_string(),
            });
        };
        let op = Op::from_name(name).ok_or_else(|| ArchParseError::UnknownOp {
            name: name.to_string(),
            offset: edge_offset,
        })?;
        if input != from.to_string() {
            return Err(ArchParseError::WrongInput {
                to,
                expected: from,
                offset: edge_offset + name.len() + 1,
                found: input.to_string(),
            });
        }
        ops.push(op);
    }
    Ok(())
}

/// Splits `s` on `sep`, pairing each piece with its offset (`base` + its position in `s`).
fn split_with_offsets(s: &str, sep: char, base: usize) -> Vec<(usize, &str)> {
    let mut offset = base;
    s.split(sep)
        .map(|piece| {
            let start = offset;
            offset += piece.len() + sep.len_utf8();
            (start, piece)
        })
        .collect()
}
