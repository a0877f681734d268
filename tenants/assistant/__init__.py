"""The message assistant: drafts of a text rewritten (fit N segments, GSM-7 only, friendlier,
shorter, more direct) or translated, by a provider chosen by settings (`rules`, offline and
deterministic; `apertium`, offline en<->es machine translation; `openai`, any OpenAI-compatible
chat-completions endpoint). Placeholders, links, the brand name and the opt-out wording are
protected: a draft that changed or dropped one is refused. A draft is only returned, never saved
or sent: it becomes a text through the normal template write and approval."""
