"""The cleaning rules, one at a time, then together."""

from dataclasses import replace
from pathlib import Path

from bakery.text.clean import (CleanRules, cap_length, clean, content_ngrams, cut_at_end_marker, finish_sentence,
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


# --- rule 8: prompt echo --------------------------------------------------------------------------

SHIPPED = Path(__file__).resolve().parents[1] / "content"
# Snippets of the shipped bake (seeds 0-143, the shipped prompt and model) that passed every
# other rule: the first three echo the prompt's framing ("a magazine's guide to this season's
# premieres"), the others are what the page is for.
ECHOES = {
    1: "This season's premieres are: The Siren (2019) - A magical girl anime about a sorceress who goes "
       "on a journey to protect her village.",
    2: "For a new season's premiere, I'd like to create a series of entries that blend the elements of this "
       "magical girl in anime with an anime twist. In the first episode, I'd introduce my main character, a "
       "young and beautiful dragon named Akuma, who is known for her incredible strength and agility.",
    3: "_The Lost City of Lost Tales_: In the grand tapestry, where shadows unfold, lies a city shrouded in "
       "mystery. A place where magic is woven into every thread, and the fate of the land hangs by an invisible "
       "rope. It's here, in this magazine guide to a new summer season’s premieres, that a brave soul might "
       "find their way to the hidden treasure.",
}
STORIES = [
    "The first episode of a new anime series features a magical girl who discovers her home world and must "
    "navigate the challenges of growing up in a dystopian future. As she explores the shadows, a group of "
    "mecha pilots try to escape their confinement by jumping into a spaceship.",
    "A summer festival in the year 2057 at a bustling anime club was about to change everything. One of the "
    "members of this club, a group called the Apathy Collective, had been planning their next big adventure "
    "for months prior.",
    "The air is thick with the smell of smoke and desperation. Her name was Akira Kaneshima, a symbol of hope "
    "in a world where the lines between reality and fantasy blur. The first episode of this season focuses "
    "on a small town in Tokyo that's been transformed into a dystopian nightmare.",
    "The first episode of the anime series, Manga-Piranaha, follows a young girl named Tetsuya Nakamura as "
    "she embarks on a perilous journey. The main character, a cadet at a space colony, faces numerous "
    "challenges that test her courage.",
]


def shipped_rules_and_prompt() -> tuple[CleanRules, str]:
    from bakery.config import load_config

    cfg = load_config(SHIPPED / "site.toml").text
    return replace(cfg.clean, min_chars=40), cfg.stages[0].prompt.read_text(encoding="utf-8")


def test_snippets_echoing_the_shipped_prompt_are_rejected():
    rules, prompt = shipped_rules_and_prompt()
    for snippet_id, text in ECHOES.items():
        result = clean(text, rules, prompt)
        assert not result.ok and result.reason.startswith("echoes the prompt: repeats"), snippet_id
        assert "'season premiere'" in result.reason
    assert "'magazine guide'" in clean(ECHOES[3], rules, prompt).reason


def test_stories_on_the_shipped_prompt_pass():
    rules, prompt = shipped_rules_and_prompt()
    for text in STORIES:
        assert clean(text, rules, prompt).ok, text
    assert clean(ECHOES[2], rules).ok  # no prompt given: the rule does not apply


def test_content_ngrams_fold_case_possessives_plurals_and_stop_at_punctuation():
    assert content_ngrams("A Magazine's Guide to this Season’s PREMIERES.", 2) == {
        ("magazine", "guide"), ("season", "premiere")}
    assert content_ngrams("the main character, a young pilot; entries - cats", 2) == {
        ("main", "character"), ("young", "pilot")}
    assert content_ngrams("series of stories", 1) == {("series",), ("story",)}


def test_a_verbatim_echo_is_rejected_by_the_default_rules():
    rules = CleanRules(min_chars=40)  # no echo_allow: only a snippet repeating much of the prompt fails
    prompt = (SHIPPED / "prompts/plot.txt").read_text(encoding="utf-8")
    echo = ("Write the entry for a new anime series in a magazine's guide to this season's premieres. "
            "Give the main character a name, describe the world they live in and the trouble that begins in "
            "the first episode. One paragraph of flowing prose.")
    assert clean(echo, rules, prompt).reason.startswith("echoes the prompt")
    assert all(clean(text, rules, prompt).ok for text in STORIES)


def test_echo_threshold_allow_list_prefix_and_off_switch():
    prompt = "Plot summary of a haunted lighthouse keeper. In the first episode of this anime,"
    text = "In the first episode, the haunted lighthouse keeper finds a letter from his drowned brother."
    strict = CleanRules(min_chars=20, max_echo=0)
    assert clean(text, strict, prompt).reason == (
        "echoes the prompt: repeats 'first episode', 'haunted lighthouse', 'lighthouse keeper' "
        "(3 of its 2-word phrases; max_echo = 0)")
    assert clean(text, replace(strict, max_echo=3), prompt).ok
    # The stage prefix is the snippet's own start, and echo_allow names what it is meant to repeat.
    allowed = replace(strict, echo_allow=("haunted lighthouse keeper",))
    assert clean(text, allowed, prompt, prefix="In the first episode,").ok
    assert not clean(text, allowed, prompt).ok
    assert clean(text, replace(strict, echo_ngram=0), prompt).ok
    assert clean(text, replace(strict, echo_ngram=3), prompt).reason.startswith(
        "echoes the prompt: repeats 'haunted lighthouse keeper' (1 of its 3-word phrases")
