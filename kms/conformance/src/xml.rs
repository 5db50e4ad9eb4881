//! The OASIS test-case files: KMIP's XML encoding (KMIP 2.1 profiles §5.4 "XML Encoding") read
//! into a raw tree that keeps the placeholders (`$UNIQUE_IDENTIFIER_0`, `$NOW-3600`, …) the
//! test cases use. Values are interpreted only when a request is sent ([`mod@crate::resolve`]) or
//! a response compared ([`mod@crate::compare`]).

use std::fmt;

/// One element: a structure (no `type`) or a primitive with its `type` and raw `value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Element name: the KMIP tag name (or `0x42XXXX`).
    pub tag: String,
    /// `type` attribute; `None` for a structure.
    pub ty: Option<String>,
    /// `value` attribute, verbatim.
    pub value: String,
    /// Children of a structure.
    pub children: Vec<Node>,
}

impl Node {
    /// The first child named `tag`.
    pub fn child(&self, tag: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.tag == tag)
    }
}

/// One request and the response the test case expects.
#[derive(Debug, Clone)]
pub struct Step {
    /// `RequestMessage`.
    pub request: Node,
    /// `ResponseMessage`.
    pub response: Node,
}

/// A test case file.
#[derive(Debug, Clone)]
pub struct Case {
    /// File stem (`BL-M-1-21`).
    pub name: String,
    /// Requests with their expected responses, in order.
    pub steps: Vec<Step>,
}

/// Why a file could not be read as a test case.
#[derive(Debug)]
pub enum XmlError {
    /// Not well-formed XML.
    Syntax(roxmltree::Error),
    /// The root is not `<KMIP>`.
    NotKmip,
    /// A `RequestMessage` without the `ResponseMessage` after it (or the reverse).
    Unpaired(usize),
    /// A primitive element without a `value` attribute.
    NoValue(String),
}

impl fmt::Display for XmlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            XmlError::Syntax(e) => write!(f, "XML: {e}"),
            XmlError::NotKmip => f.write_str("the root element is not <KMIP>"),
            XmlError::Unpaired(i) => write!(f, "message {i} is not a request/response pair"),
            XmlError::NoValue(t) => write!(f, "<{t}> has a type but no value"),
        }
    }
}

impl std::error::Error for XmlError {}

/// Parses one test case.
pub fn parse_case(name: &str, text: &str) -> Result<Case, XmlError> {
    let doc = roxmltree::Document::parse(text).map_err(XmlError::Syntax)?;
    let root = doc.root_element();
    if root.tag_name().name() != "KMIP" {
        return Err(XmlError::NotKmip);
    }
    let messages: Vec<Node> = root
        .children()
        .filter(|n| n.is_element())
        .map(node)
        .collect::<Result<_, _>>()?;
    let mut steps = Vec::new();
    let mut it = messages.into_iter().enumerate();
    while let Some((i, request)) = it.next() {
        let Some((_, response)) = it.next() else {
            return Err(XmlError::Unpaired(i));
        };
        if request.tag != "RequestMessage" || response.tag != "ResponseMessage" {
            return Err(XmlError::Unpaired(i));
        }
        steps.push(Step { request, response });
    }
    Ok(Case {
        name: name.to_owned(),
        steps,
    })
}

fn node(n: roxmltree::Node<'_, '_>) -> Result<Node, XmlError> {
    let tag = n.tag_name().name().to_owned();
    let ty = n.attribute("type").map(str::to_owned);
    let value = match (&ty, n.attribute("value")) {
        (Some(_), Some(v)) => v.to_owned(),
        (Some(_), None) => return Err(XmlError::NoValue(tag)),
        (None, _) => String::new(),
    };
    let children = n
        .children()
        .filter(|c| c.is_element())
        .map(node)
        .collect::<Result<_, _>>()?;
    Ok(Node {
        tag,
        ty,
        value,
        children,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_requests_with_responses() {
        let text = r#"<KMIP><!-- c -->
          <RequestMessage><RequestHeader><BatchCount type="Integer" value="1"/></RequestHeader></RequestMessage>
          <ResponseMessage><ResponseHeader><TimeStamp type="DateTime" value="$NOW"/></ResponseHeader></ResponseMessage>
        </KMIP>"#;
        let case = parse_case("X", text).unwrap();
        assert_eq!(case.steps.len(), 1);
        let header = case.steps[0].response.child("ResponseHeader").unwrap();
        assert_eq!(header.children[0].value, "$NOW");
        assert_eq!(header.children[0].ty.as_deref(), Some("DateTime"));
    }

    #[test]
    fn malformed_files_are_typed_errors() {
        assert!(matches!(
            parse_case("X", "<KMIP><RequestMessage/></KMIP>"),
            Err(XmlError::Unpaired(0))
        ));
        assert!(matches!(
            parse_case("X", "<Other/>"),
            Err(XmlError::NotKmip)
        ));
        assert!(matches!(
            parse_case("X", "<KMIP><A type=\"Integer\"/><B/></KMIP>"),
            Err(XmlError::NoValue(t)) if t == "A"
        ));
        assert!(matches!(
            parse_case("X", "<KMIP>"),
            Err(XmlError::Syntax(_))
        ));
    }
}
