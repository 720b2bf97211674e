-- section: Store
-- title: What the store holds
-- chart: table
-- note: One row per model, dataset, hook and layer: activation rows (one per stored token), the documents they cover, and the model's token count over the dataset (pad tokens are never stored, so rows equal tokens).
with acts as (
    select model, dataset, hook, layer, count(*) as activation_rows, count(distinct doc_id) as documents
    from activations
    group by all
), toks as (
    select model, dataset, count(*) as tokens from tokens group by all
)
select a.model, a.dataset, a.hook, a.layer, a.activation_rows, a.documents, t.tokens
from acts a left join toks t using (model, dataset)
order by a.model, a.dataset, a.hook, a.layer
