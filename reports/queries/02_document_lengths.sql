-- section: Store
-- title: Documents by length in tokens
-- chart: bar x=n_tokens y=documents series=model
-- note: Each model's tokenizer splits the same documents differently; documents longer than the extraction's max_length are truncated and counted in the manifest.
select model, n_tokens, count(*) as documents
from documents
group by all
order by model, n_tokens
