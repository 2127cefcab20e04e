"""Small real fixtures shared by the tests, the benchmarks and the corpus scripts (a tiny random Qwen3 on the
real tokenizer; PDFs with real fonts). Never used by the product at run time."""
