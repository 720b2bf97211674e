-- section: Activation sparsity
-- title: What enforced sparsity costs
-- chart: line x=sparsity y=cost series=method facet=panel
-- note: MLP neurons removed in the forward pass (every measured layer at once) against the cost: the rise in next-token loss, in nats, for causal models; 1 - cosine of the final-layer token vectors for encoders. CETT truncation drops the neurons with the smallest contributions at increasing CETT targets; top-k keeps the k largest activations per token.
with model_rows as (select * from sparsity where layer is null)
select s.model || ' (' || case when c.metric like '%loss%' then 'loss increase' else 'representation change' end || ')' as panel,
       case s.metric when 'sparsity' then 'CETT truncation' else 'top-k' end as method,
       s.value as sparsity, c.value as cost
from model_rows s
join model_rows c on s.model = c.model and s.param = c.param
where (s.metric = 'sparsity' and c.metric in ('loss_increase', 'representation_change'))
   or (s.metric = 'topk_sparsity' and c.metric in ('topk_loss_increase', 'topk_representation_change'))
order by panel, method, sparsity
