-- section: Residual stream
-- title: Mean residual-stream norm per layer
-- chart: line x=layer y=mean_norm series=model facet=hook
-- note: The average L2 norm of the residual stream over every stored token, entering (resid_pre) and leaving (resid_post) each block; models differ in scale, so compare the shape of each curve.
select hook, model, layer, avg(sqrt(list_dot_product(act, act))) as mean_norm, count(*) as tokens
from activations
where hook in ('resid_pre', 'resid_post')
group by hook, model, layer
order by hook = 'resid_post', model, layer  -- resid_pre's panel first
