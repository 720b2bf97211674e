-- section: MLP neurons
-- title: Fraction of MLP neurons active per layer
-- chart: line x=layer y=frac_active series=model
-- note: Share of MLP neuron activations (mlp_post, after the nonlinearity) that are above zero, over every stored token; a low fraction means a sparse layer.
select model, layer,
       sum(list_sum(list_transform(act, lambda x: x > 0))) / sum(len(act)) as frac_active,
       max(len(act)) as neurons
from activations
where hook = 'mlp_post'
group by all
order by model, layer
