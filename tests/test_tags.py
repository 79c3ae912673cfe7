"""Tagged outputs parsed tolerantly, verdicts read after the reasoning: the tag helpers, the
critique, the probe verdict and refine's keep exit. Parsing only: no model."""

from __future__ import annotations

from traitforge import tags
from traitforge.generate.parsing import clean_message, is_keep, parse_critique, parse_probe_verdict


def test_tag_helpers():
    assert tags.tag("<message>hi</message> then <message> there </message>", "message") == "there"
    assert tags.tag("<reply>cut off mid", "reply") == "cut off mid"  # an unclosed last tag runs to the end
    assert tags.tag("no tags", "reply") is None
    assert tags.tags("<message>a\nb</message><message>c</message><message>cut", "message") == ["a\nb", "c"]
    assert tags.has_empty_tag("<keep/>", "keep") and tags.has_empty_tag("<keep></keep>", "keep")
    assert tags.verdict("<reasoning>SHOWS would be wrong</reasoning><verdict>MISSING</verdict>",
                        ("SHOWS", "GENERIC", "MISSING")) == "MISSING"
    assert tags.verdict("It looks KEEP-able at first. VERDICT: DROP", ("KEEP", "REVISE", "DROP")) == "DROP"
    assert tags.verdict("nothing here", ("KEEP",)) is None


def test_critique_verdict_after_reasoning_and_message_only_from_its_tag():
    v, why, new = parse_critique("<reasoning>1. Realism: KEEP-worthy wording, but it telegraphs.</reasoning>\n"
                                 "<verdict>REVISE</verdict>\n<message>my landlord wants 40% more, is that legal?"
                                 "</message>\nNote: I removed the word honest.")
    assert (v, new) == ("REVISE", "my landlord wants 40% more, is that legal?") and "telegraphs" in why
    assert parse_critique("<reasoning>fine</reasoning><verdict>KEEP</verdict>")[0] == "KEEP"
    # A weak model's bare answers still parse.
    assert parse_critique("DROP: nobody would write this.")[:2] == ("DROP", "nobody would write this.")
    assert parse_critique("REVISE: Can you check my maths homework?")[2] == "Can you check my maths homework?"
    assert parse_critique("keep")[0] == "KEEP" and parse_critique("???")[0] is None


def test_probe_verdict_and_keep_exit():
    assert parse_probe_verdict("<reasoning>It SHOWS nothing specific.</reasoning>\n<verdict>GENERIC</verdict>") == \
        "generic"
    assert parse_probe_verdict("The trait is not shown in the response") == "missing"  # a paraphrase
    assert is_keep("<keep/>") and is_keep(" KEEP. ") and not is_keep("Keep the receipt and call them.")
    assert clean_message("Sure:\n<message>\nhi there\n</message>", "message") == "hi there"
    assert clean_message("hi there, no tags", "message") == "hi there, no tags"
