-- section: Residual stream
-- title: Residual-stream norm by position and layer
-- chart: heatmap x=pos y=layer value=mean_norm facet=model
-- note: Mean L2 norm of resid_post at each token position; positions reached by fewer than 20 tokens are left out as too noisy. A column unlike its neighbours marks a position the model treats specially (MiniLM's [CLS] token is position 0).
select model, layer, pos, avg(sqrt(list_dot_product(act, act))) as mean_norm, count(*) as tokens
from activations
where hook = 'resid_post'
group by all
having count(*) >= 20
order by model, layer, pos
