-- section: Brain alignment
-- title: Permutation p-values per layer and region, trained vs random init
-- note: p = (1 + permutations whose median r reaches the observed one) / (1 + permutations), the responses permuted within passages (the stimulus-response pairing broken, the passage structure kept); the smallest possible p is 1 / (1 + permutations). Listed layer: p, from the first layer to the last.
select model, subject, roi, init, features, any_value(n_permutations) as permutations,
       round(1.0 / (1 + any_value(n_permutations)), 4) as smallest_p,
       string_agg(layer || ': ' || round(p_value, 4), ', ' order by layer) as p_by_layer
from brain_layers
where hook = 'resid_post' and p_value is not null
group by model, subject, roi, init, features
order by model, subject, roi, init desc, features
