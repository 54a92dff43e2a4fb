"""A bundled English stopword list, so that nothing is downloaded at run time.

The chapter (section 5.1) calls ``nltk.download('stopwords')``, which fails offline.
This list was written for minillm: function words of English (articles, pronouns,
auxiliary and modal verbs, prepositions, conjunctions, common adverbs and their
contracted forms), all lowercase.

Negations ("not", "no", "nor", "never", "n't") are deliberately *left out*: removing
them flips the meaning of "not good", which is exactly what a sentiment classifier
must see (see ``minillm.data.corpora.sentiment``).
"""

_WORDS = """
a about above after again against all am an and any are as at
be because been before being below between both but by
can could
did do does doing done down during
each either
few for from further
had has have having he her here hers herself him himself his how
i if in into is it its itself
just
me more most my myself
now
of off on once only or other ought our ours ourselves out over own
same shall she should so some such
than that the their theirs them themselves then there these they this those
through to too
under until up upon
very
was we were what when where which while who whom whose why will with would
you your yours yourself yourselves
i'm i've i'll i'd you're you've you'll you'd he's she's it's we're we've we'll
we'd they're they've they'll they'd that's there's here's what's who's let's
'm 've 'll 'd 're 's
"""

STOPWORDS: frozenset[str] = frozenset(_WORDS.split())
"""English stopwords (lowercase). Negations are *not* in the list, on purpose."""

NEGATIONS: frozenset[str] = frozenset(
    {"not", "no", "nor", "never", "n't", "none", "nothing", "nobody", "neither"}
)
"""Words that the list keeps because they reverse meaning."""
