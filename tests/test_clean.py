"""The cleaning rules, one at a time, then together."""

from bakery.text.clean import (CleanRules, cap_length, clean, cut_at_end_marker, finish_sentence,
                               drop_unmatched_quote, is_degenerate, looks_like_form, normalize,
                               promote_title, rejected_word, repeat_fraction, split_title, strip_markdown,
                               strip_source_tails)

SENTENCE = "Mika joins the astronomy club to find the comet her late mother named."
RULES = CleanRules(min_chars=40, max_chars=200, ellipsis="…")


def test_end_marker_cuts_and_drops_the_rest():
    raw = f"{SENTENCE}<|endoftext|>In sports news, the home team won 3-1."
    assert cut_at_end_marker(raw, ("<|endoftext|>",)) == SENTENCE


def test_end_marker_earliest_of_several_wins():
    raw = "One.</s>Two.<|endoftext|>Three."
    assert cut_at_end_marker(raw, ("<|endoftext|>", "</s>")) == "One."


def test_no_end_marker_keeps_text():
    assert cut_at_end_marker(SENTENCE, ("<|endoftext|>",)) == SENTENCE


def test_source_tail_is_stripped():
    assert strip_source_tails(f"{SENTENCE} (Source: ANN)") == SENTENCE
    assert strip_source_tails(f"{SENTENCE} (source: Crunchyroll News)\n\nMore.") == f"{SENTENCE}\n\nMore."
    assert strip_source_tails(f"{SENTENCE} [Written by MAL Rewrite]") == SENTENCE


def test_parentheses_that_are_not_credits_stay():
    text = "Kaito (a retired pilot) returns home."
    assert strip_source_tails(text) == text


def test_markdown_is_stripped_but_title_underscores_stay():
    raw = "# Preview\n**Mika** joins the *astronomy* club.\n* She finds a map.\n- Then a comet."
    assert strip_markdown(raw) == "Preview\nMika joins the astronomy club.\nShe finds a map.\nThen a comet."
    assert strip_markdown("_Comet Club_: a well-known story - or not.") == "_Comet Club_: a well-known story - or not."


def test_fact_sheets_are_not_stories():
    assert looks_like_form("Title: Night\nGenre: Drama\nSetting: Tokyo\nThe end.")
    assert not looks_like_form("_Comet Club_: Mika joins.\n\nIn the first episode: a comet.")
    assert clean("Title: Night\nGenre: Drama\nSetting: Tokyo\n" + SENTENCE * 3, RULES).reason.startswith("a list")


def test_normalize_whitespace_and_paragraphs():
    raw = "  First   line\twith  gaps.\r\nStill first paragraph.\n\n\n\n  Second\u00a0paragraph.  "
    assert normalize(raw) == "First line with gaps. Still first paragraph.\n\nSecond paragraph."


def test_normalize_unicode_forms_and_invisibles():
    # NFKC folds full-width letters and ligatures; zero-width and control characters go.
    assert normalize("Ｔｏｋｙｏ ﬁre\u200b\u0007 night") == "Tokyo fire night"


def test_title_prefix_is_recognised():
    assert split_title("_Star Bakery_: A girl bakes.") == ("_Star Bakery_: ", "A girl bakes.")
    assert split_title("No title here.") == ("", "No title here.")


def test_title_lines_become_the_title_prefix():
    assert promote_title('Title: "Night Bloom"\n\nA story.') == "_Night Bloom_: A story."
    assert promote_title("Title: Night Bloom\nA story.") == "_Night Bloom_: A story."
    assert promote_title('"Lumina: The Lost City"\n\nA story.') == "_Lumina: The Lost City_: A story."
    assert promote_title("Manga-Piranha: The End of the World by Hikaru Kaneshiya\n\nA story.") == "_Manga-Piranha: The End of the World by Hikaru Kaneshiya_: A story."
    assert promote_title('"I am Mae," she said.\nA story.') == '"I am Mae," she said.\nA story.'
    assert promote_title("A sentence that ends.\nA story.") == "A sentence that ends.\nA story."
    assert promote_title("_Kept_: as is.\nMore.") == "_Kept_: as is.\nMore."
    assert promote_title('Title: "Only a title"\n') == 'Title: "Only a title"\n'


def test_unmatched_opening_quote_is_dropped():
    assert drop_unmatched_quote('"I am Mae and I live on an island.') == "I am Mae and I live on an island."
    assert drop_unmatched_quote('"Run," she said.') == '"Run," she said.'
    assert drop_unmatched_quote('_T_: "Open quote.') == "_T_: Open quote."


def test_rejected_words():
    assert rejected_word("The Nazis return.", ("nazi",)) == "nazi"
    assert rejected_word("A grape harvest festival.", ("rape",)) == ""
    assert clean(SENTENCE + " Porn.", RULES).reason.startswith("contains a rejected word")


def test_unfinished_sentence_is_dropped_when_enough_remains():
    text = f"{SENTENCE} But then the tele"
    assert finish_sentence(text, min_chars=40, ellipsis="…") == SENTENCE


def test_unfinished_sentence_gets_ellipsis_when_too_short_otherwise():
    assert finish_sentence("Short. And then the", min_chars=40, ellipsis="…") == "Short. And then the…"


def test_finished_text_is_untouched():
    assert finish_sentence(f'{SENTENCE} "Why?"', min_chars=10, ellipsis="…") == f'{SENTENCE} "Why?"'


def test_cap_length_cuts_at_sentence_end():
    text = " ".join([SENTENCE] * 5)
    capped = cap_length(text, 160, "…")
    assert len(capped) <= 160 and capped.endswith("named.") and capped.count(".") == 2


def test_cap_length_falls_back_to_word_and_ellipsis():
    text = "word " * 100
    capped = cap_length(text.strip(), 50, "…")
    assert len(capped) <= 50 and capped.endswith("word…")


def test_cap_length_never_cuts_into_title():
    text = "_A Very Long Title Indeed_: " + " ".join([SENTENCE] * 4)
    capped = cap_length(text, 120, "…")
    assert capped.startswith("_A Very Long Title Indeed_: ") and len(capped) <= 120


def test_repeat_fraction():
    assert repeat_fraction(SENTENCE, 4) == 0.0
    assert repeat_fraction("the cat sat down " * 20, 4) > 0.9


def test_degenerate_loops_are_detected():
    assert is_degenerate("Genre: Drama, " * 20, RULES)
    assert is_degenerate("Aaaaaaaaaaaaaaaaaaaaaaaah!", RULES)
    assert is_degenerate("Line one.\nLine two.\nLine one.\nLine one.\nLine one.", RULES)
    assert not is_degenerate(SENTENCE + " The comet never came, but a strange girl did.", RULES)


def test_clean_rejects_short_and_empty():
    assert clean("Too short.", RULES).reason.startswith("too short")
    assert clean("   <|endoftext|> everything after the marker", RULES).reason == "empty output"


def test_clean_rejects_degenerate():
    result = clean("The festival begins. " * 10, RULES)
    assert not result.ok and "repetition" in result.reason


def test_clean_keeps_title_and_everything_together():
    raw = ("_Comet Club_:   Mika joins the astronomy club.\u200b (Source: MAL)\n\n\n"
           "In the first episode, she finds a map of the sky that nobody can read. Her friend"
           "<|endoftext|>Sports: the Giants won.")
    result = clean(raw, CleanRules(min_chars=40, max_chars=500))
    assert result.ok, result.reason
    assert result.text == ("_Comet Club_: Mika joins the astronomy club.\n\n"
                           "In the first episode, she finds a map of the sky that nobody can read.")


def test_clean_caps_long_text():
    result = clean(" ".join(f"Sentence number {n} is here." for n in range(60)), RULES)
    assert result.ok and len(result.text) <= RULES.max_chars and result.text.endswith(".")


def test_title_line_in_angle_brackets_or_after_an_unmatched_quote_is_promoted():
    story = ("Lena, a bright and curious girl with the eyes of a dragon, walks the earth. Her family hid "
             "their magic for centuries in a small village on the edge of the continent of Tenria.")
    assert clean(f"<<The Unseen City>>\n\n{story}", CleanRules()).text.startswith("_The Unseen City_: Lena")
    assert clean(f"«Night Bloom»\n{story}", CleanRules()).text.startswith("_Night Bloom_: Lena")
    assert clean(f'"Manga-Piranha: The End\n\n{story}', CleanRules()).text.startswith("_Manga-Piranha: The End_: Lena")
